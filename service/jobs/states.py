"""A job's states and every way it moves between them, as one table each for the job and
for the quality measurement of a succeeded one.

The tables are the lifecycle's specification: the Lua scripts that make each move
(:mod:`service.jobs.lua`) take the states they act from out of them, the state diagram in
docs/SERVICE.md is printed from them (:func:`markdown`), and tests/service/test_job_states.py
drives every script from every state against a real Redis and checks that it only ever
makes a move these tables list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

JobState = Literal["queued", "running", "succeeded", "failed", "canceled"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed", "canceled")
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})

# The quality measurement of a succeeded job (``lipsync evaluate``, its own low-priority
# task): ``pending`` (queued), ``running``, ``ready`` (its numbers are in), ``failed`` (it
# could not be measured; the note says why), ``skipped`` (turned off, or canceled).
QualityState = Literal["pending", "running", "ready", "failed", "skipped"]
QUALITY_STATES: tuple[QualityState, ...] = ("pending", "running", "ready", "failed", "skipped")
QUALITY_FINAL: frozenset[str] = frozenset({"ready", "failed", "skipped"})


@dataclass(frozen=True)
class Move:
    """One row: ``event`` (the script that makes the move) takes a record from ``source``
    to ``target`` ``when`` (in words). ``source`` None: the record does not exist yet."""

    event: str
    source: str | None
    target: str
    when: str


#: The job. A move whose target equals its source changes only a flag or a counter.
JOB_MOVES: tuple[Move, ...] = (
    Move("submit", None, "queued", "push: the record is written, then its message sent"),
    Move("cancel", "queued", "canceled", "terminate or DELETE: it never starts"),
    Move("cancel", "running", "running", "terminate or DELETE: flagged, stops at its next check"),
    Move("claim", "queued", "running", "a worker takes it: attempt counted, lease taken"),
    Move("claim", "running", "running", "redelivered after its runner was lost (no lease)"),
    Move("claim", "queued", "canceled", "a cancel was flagged before it started"),
    Move("claim", "running", "canceled", "a cancel was flagged before its runner was lost"),
    Move("claim", "queued", "failed", "its attempts ran out: worker_lost"),
    Move("claim", "running", "failed", "attempts ran out (worker_lost), or past its time limit"),
    Move("finish", "running", "succeeded", "its runner published the result"),
    Move("finish", "running", "failed", "its runner failed it (a code), or cleanup timed it out"),
    Move("finish", "running", "canceled", "its runner stopped at the cancel flag"),
    Move("hand_back", "running", "queued", "its worker is stopped: the attempt is given back"),
    Move("hand_back", "running", "canceled", "its worker is stopped after a cancel was flagged"),
)

#: The measurement of a succeeded job (its ``q_*`` fields; ``finish`` of the job starts it
#: as ``pending``, or ``skipped`` when it is not to be measured).
QUALITY_MOVES: tuple[Move, ...] = (
    Move("q_cancel", "pending", "skipped", "terminate or DELETE: it never starts"),
    Move("q_cancel", "running", "running", "terminate or DELETE: flagged, stops at its next check"),
    Move("q_claim", "pending", "running", "a worker takes it: attempt counted"),
    Move("q_claim", "running", "running", "redelivered after its runner was lost"),
    Move("q_claim", "pending", "skipped", "a cancel was flagged before it started"),
    Move("q_claim", "running", "skipped", "a cancel was flagged before its runner was lost"),
    Move("q_claim", "pending", "failed", "its attempts ran out"),
    Move("q_claim", "running", "failed", "its attempts ran out"),
    Move("q_finish", "running", "ready", "its runner recorded the numbers"),
    Move("q_finish", "running", "failed", "its runner could not measure it"),
    Move("q_finish", "running", "skipped", "its runner stopped at the cancel flag"),
    Move("q_hand_back", "running", "pending", "its worker stops, or a job waits: given back"),
    Move("q_hand_back", "running", "skipped", "given back after a cancel was flagged"),
)


def sources(moves: tuple[Move, ...], event: str) -> tuple[str, ...]:
    """The states ``event`` acts from (in table order); from any other it changes nothing."""
    found: list[str] = []
    for move in moves:
        if move.event == event and move.source is not None and move.source not in found:
            found.append(move.source)
    if not found:
        raise KeyError(f"no move {event!r} in the table")
    return tuple(found)


def targets(moves: tuple[Move, ...], event: str, source: str) -> frozenset[str]:
    """The states ``event`` may leave a record in that was in ``source``."""
    return frozenset(m.target for m in moves if m.event == event and m.source == source)


def markdown(moves: tuple[Move, ...]) -> str:
    """The table as Markdown (docs/SERVICE.md prints it between markers)."""
    rows = ["| Event | From | To | When |", "| --- | --- | --- | --- |"]
    for m in moves:
        source = "(none)" if m.source is None else f"`{m.source}`"
        rows.append(f"| `{m.event}` | {source} | `{m.target}` | {m.when} |")
    return "\n".join(rows) + "\n"
