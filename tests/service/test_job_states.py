"""The state tables against the scripts: every move of the job and of its measurement, run
from every state (with and without a cancel flag, a lease, attempts left) on a real Redis,
makes exactly the moves service/jobs/states.py lists, and every move it lists happens."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.jobs import JobRecord, JobStore
from service.jobs.states import (
    JOB_MOVES,
    JOB_STATES,
    QUALITY_MOVES,
    QUALITY_STATES,
    markdown,
    sources,
    targets,
)
from tests.app.service_harness import RedisServer

MAX_ATTEMPTS = 3


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    with JobStore.from_url(redis_server.url, f"st{uuid.uuid4().hex[:8]}", 600) as st:
        yield st
        keys = list(st.client.scan_iter(f"{st.prefix}:*"))
        if keys:
            st.client.delete(*keys)


def _snapshot(store: JobStore, job_id: str) -> tuple[Any, ...]:
    """Everything a move may change: the record, its queue entries, its lease."""
    c, k = store.client, store.keys
    return (
        c.hgetall(k.job(job_id)),
        c.zscore(k.queued, job_id),
        c.zscore(k.running, job_id),
        c.get(k.lease(job_id)),
    )


def _job_in(store: JobStore, state: str | None, cancel: bool, lease: bool, spent: bool) -> str:
    """A job in ``state`` (None: no record), as the scripts leave one in it."""
    job_id = uuid.uuid4().hex
    if state is None:
        return job_id
    store.jobs.create(JobRecord(id=job_id, owner="o", state="queued", created_at=time.time()))
    c, k = store.client, store.keys
    fields = {"state": state, "attempts": str(MAX_ATTEMPTS if spent else 0)}
    if cancel:
        fields["cancel"] = "1"
    c.hset(k.job(job_id), mapping=fields)
    if state != "queued":
        c.zrem(k.queued, job_id)
    if state == "running":
        c.zadd(k.running, {job_id: time.time()})
        if lease:
            c.set(k.lease(job_id), "h1", px=30_000)
    return job_id


def _job_moves(store: JobStore) -> Iterator[tuple[str, Callable[[str], object]]]:
    yield "cancel", store.jobs.request_cancel
    yield "claim", lambda j: store.leases.claim(j, MAX_ATTEMPTS, "w2", "h2", 30)
    for holder in ("h1", "h9"):
        yield "hand_back", lambda j, h=holder: store.leases.hand_back(j, h)  # type: ignore[misc]
    for final in ("succeeded", "failed", "canceled"):
        yield "finish", lambda j, f=final: store.jobs.finish(j, f)  # type: ignore[misc]


def _observe(
    store: JobStore,
    moves: Iterator[tuple[str, Callable[[str], object]]],
    setups: Iterator[tuple[str | None, Callable[[], str]]],
    state_field: str,
    table: tuple[Any, ...],
) -> set[tuple[str, str, str]]:
    """Run every move from every set-up; check each against ``table``; the moves seen."""
    seen: set[tuple[str, str, str]] = set()
    setups_list = list(setups)
    for event, run in moves:
        for source, make in setups_list:
            job_id = make()
            before = _snapshot(store, job_id)
            run(job_id)
            after = _snapshot(store, job_id)
            target = after[0].get(state_field)
            case = f"{event} from {source}: {before} -> {after}"
            if source is None or source not in sources(table, event):
                assert after == before, f"changed what it may not: {case}"
                continue
            if after == before:
                continue  # it declined (busy, a lease held, ...): nothing written
            assert target in targets(table, event, source), f"a move not in the table: {case}"
            seen.add((event, source, target))
    return seen


def test_every_job_move_is_in_the_table_and_every_row_happens(store: JobStore) -> None:
    def setups() -> Iterator[tuple[str | None, Callable[[], str]]]:
        for state, cancel, lease, spent in itertools.product(
            (None, *JOB_STATES), (False, True), (False, True), (False, True)
        ):
            yield state, lambda s=state, c=cancel, le=lease, sp=spent: _job_in(store, s, c, le, sp)

    seen = _observe(store, _job_moves(store), setups(), "state", JOB_MOVES)
    job_id = uuid.uuid4().hex
    store.jobs.create(JobRecord(id=job_id, owner="o", state="queued", created_at=time.time()))
    assert store.jobs.get(job_id).state == "queued"  # type: ignore[union-attr]
    seen.add(("submit", None, "queued"))  # type: ignore[arg-type]
    table = {(m.event, m.source, m.target) for m in JOB_MOVES}
    assert seen == table, f"never happened: {table - seen}"


def test_finish_takes_only_a_final_state(store: JobStore) -> None:
    job_id = _job_in(store, "running", False, True, False)
    with pytest.raises(ValueError):
        store.jobs.finish(job_id, "queued")
    assert store.jobs.get(job_id).state == "running"  # type: ignore[union-attr]


def _measurement_in(store: JobStore, state: str | None, cancel: bool, spent: bool) -> str:
    """A succeeded job whose measurement is in ``state`` (None: it has none), run by h1."""
    job_id = _job_in(store, "succeeded", False, False, False)
    if state is None:
        return job_id
    fields = {"q_state": state, "q_attempts": str(MAX_ATTEMPTS if spent else 0)}
    if cancel:
        fields["q_cancel"] = "1"
    if state == "running":
        fields["q_holder"] = "h1"
    store.client.hset(store.keys.job(job_id), mapping=fields)
    return job_id


def _quality_moves(store: JobStore) -> Iterator[tuple[str, Callable[[str], object]]]:
    q = store.quality
    yield "q_cancel", q.request_cancel
    yield "q_claim", lambda j: q.claim(j, "h2", MAX_ATTEMPTS)
    for holder in ("h1", "h9"):
        yield "q_hand_back", lambda j, h=holder: q.hand_back(j, h)  # type: ignore[misc]
        for final in ("ready", "failed", "skipped"):
            yield "q_finish", lambda j, h=holder, f=final: q.finish(j, h, f)  # type: ignore[misc]


def test_every_measurement_move_is_in_the_table_and_every_row_happens(store: JobStore) -> None:
    def setups() -> Iterator[tuple[str | None, Callable[[], str]]]:
        for state, cancel, spent in itertools.product(
            (None, *QUALITY_STATES), (False, True), (False, True)
        ):
            yield state, lambda s=state, c=cancel, sp=spent: _measurement_in(store, s, c, sp)

    seen = _observe(store, _quality_moves(store), setups(), "q_state", QUALITY_MOVES)
    table = {(m.event, m.source, m.target) for m in QUALITY_MOVES}
    assert seen == table, f"never happened: {table - seen}"


def test_the_service_doc_prints_the_tables() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "SERVICE.md").read_text()
    for name, moves in (("job-states", JOB_MOVES), ("quality-states", QUALITY_MOVES)):
        section = doc.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"<!-- {name}:end -->")[0]
        assert section == markdown(moves), f"docs/SERVICE.md {name}: print markdown() again"
