"""Celery settings for long GPU jobs, start-up refusal, and no heavy imports in the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.queue import TASK_CLEANUP, check_visibility, create_celery
from service.settings import MIN_VISIBILITY_S, Settings
from tests.app import service_harness as sh
from worker.lease import LEASE_RENEW_S, LEASE_S


def test_long_job_settings() -> None:
    s = Settings(soft_time_limit_s=100, hard_time_limit_s=120, visibility_timeout_s=300)
    conf = create_celery(s, with_tasks=False).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_concurrency == 1
    assert conf.task_soft_time_limit == 100 and conf.task_time_limit == 120
    assert conf.broker_transport_options["visibility_timeout"] == 300
    # every worker sweeps for lost workers' messages every few seconds, not kombu's 100 s
    opts = conf.broker_transport_options
    assert opts["unacked_restore_interval"] <= 5 and opts["unacked_restore_throttle"] == 1
    assert conf.result_backend is None and conf.task_ignore_result is True
    assert conf.beat_schedule["cleanup-expired"]["task"] == TASK_CLEANUP
    check_visibility(conf)


def test_visibility_must_outlast_a_lease() -> None:
    with pytest.raises(ValidationError, match="VISIBILITY"):
        Settings(visibility_timeout_s=MIN_VISIBILITY_S - 1)
    with pytest.raises(ValidationError, match="HARD"):
        Settings(soft_time_limit_s=30, hard_time_limit_s=20)
    conf = create_celery(Settings(), with_tasks=False).conf
    assert conf.broker_transport_options["visibility_timeout"] == 45  # the default
    conf.broker_transport_options = {"visibility_timeout": MIN_VISIBILITY_S - 1}
    with pytest.raises(RuntimeError, match="visibility_timeout"):
        check_visibility(conf)
    # the renewals keep a running job's message invisible, and a lost runner's lease has
    # lapsed by the time its message comes back
    assert MIN_VISIBILITY_S >= LEASE_S + 2 * LEASE_RENEW_S


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIPSYNC_API_KEYS", "one, two,,three")
    monkeypatch.setenv("LIPSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LIPSYNC_MAX_UPLOAD_BYTES", "2048")
    s = Settings()
    assert s.api_keys == ["one", "two", "three"]
    assert s.results_dir == tmp_path / "results"
    assert s.media_limits.max_file_bytes == 2048


def test_worker_refuses_to_start_with_short_visibility(tmp_path: Path) -> None:
    env = sh.service_env(
        "redis://127.0.0.1:1/0",
        tmp_path,
        LIPSYNC_VISIBILITY_TIMEOUT_S="15",
    )
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo"]
    proc = subprocess.run(args, cwd=sh.REPO, env=env, capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert b"VISIBILITY_TIMEOUT" in proc.stdout + proc.stderr


def test_api_and_celery_config_import_no_pipeline(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from app.main import create_app\n"
        "import worker.celery_app\n"
        "create_app()\n"
        "heavy = [m for m in ('torch', 'cv2', 'dlib', 'onnxruntime', 'lipsync.pipeline') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = sh.service_env("redis://127.0.0.1:1/0", tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=sh.REPO, env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
