"""Service configuration: one settings class, read from ``LIPSYNC_*`` environment variables.

Shared by the API and the worker (it imports nothing heavy). Every field is documented in
the README (Configuration); ``Settings()`` reads the environment when it is constructed,
never at import.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lipsync.errors import InvalidOption
from lipsync.options import MediaLimits, spec_of

#: The shortest broker visibility timeout: a running job's lease (30 s, renewed every 5 s:
#: worker/lease.py) must have lapsed when its lost runner's message comes back, and the
#: thread that renews the lease keeps the message invisible at the same pace.
MIN_VISIBILITY_S = 40


class Settings(BaseSettings):
    """All knobs of the API and the worker (env prefix ``LIPSYNC_``)."""

    model_config = SettingsConfigDict(env_prefix="LIPSYNC_", extra="ignore", frozen=True)

    # Redis: job records, cancel flags, heartbeats and (by default) the Celery broker.
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None  # defaults to redis_url
    redis_prefix: str = "lipsync"  # namespace of the service's own Redis keys
    redis_timeout_s: float = Field(default=3.0, gt=0)

    # Shared volume: uploads/, results/ and work/ live under it.
    data_dir: Path = Path("data")

    # Upload and media limits (checked while streaming and by the bounded probe).
    max_upload_bytes: int = Field(default=1024**3, ge=1024)  # whole request body
    max_duration_s: float = Field(default=600.0, gt=0)
    max_width: int = Field(default=4096, ge=16)
    max_height: int = Field(default=4096, ge=16)
    max_streams: int = Field(default=16, ge=1)
    probe_timeout_s: float = Field(default=15.0, gt=0)

    # Time limits of one job (Celery soft and hard limit), and how long after its worker is
    # lost a job's message comes back on the queue (the broker's visibility timeout; a job
    # that runs longer keeps its message invisible while it runs: docs/RELIABILITY.md).
    soft_time_limit_s: int = Field(default=3600, ge=1)
    hard_time_limit_s: int = Field(default=3900, ge=2)
    visibility_timeout_s: int = Field(default=45, ge=1)
    max_attempts: int = Field(default=3, ge=1)  # deliveries of one job before it fails

    # Admission control.
    max_queue_depth: int = Field(default=100, ge=1)
    max_segments: int = Field(default=32, ge=1, le=256)  # segments one push may carry
    retry_after_s: int = Field(default=30, ge=1)

    # Optional API keys (comma-separated). Empty: no authentication.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Retention and cleanup.
    result_ttl_s: int = Field(default=24 * 3600, ge=60)
    cleanup_interval_s: int = Field(default=900, ge=10)

    # Pipeline defaults used by the worker.
    device: str = "auto"  # a lipsync.device.DEVICES name
    default_engine: str = "retrieval"
    default_enhancer: str = "classical"
    models_dir: Path = Path("models")
    worker_concurrency: int = Field(default=1, ge=1)  # jobs at once per worker (one per GPU)
    # Longer side of every output at most this many pixels (a push's max_size may only
    # lower it); None: outputs keep the input's resolution.
    max_output_size: int | None = None  # within the max_size option's range
    # Measure every finished video with `lipsync evaluate` (sync offset and score, pauses,
    # LSE when SyncNet is in models/) and return the numbers in the job's result.
    evaluate_results: bool = True

    # URLs returned by push; empty: built from the request's own base URL, whose Host must
    # then be one of allowed_hosts (others get 400).
    public_base_url: str = ""
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"]
    )
    host: str = "127.0.0.1"  # the API's bind address (scripts/up.sh); always allowed
    # Bodies of every route but push (JSON of a few fields); push has max_upload_bytes.
    max_request_bytes: int = Field(default=16 * 1024, ge=1024)

    @field_validator("api_keys", "allowed_hosts", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("max_output_size", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_pipeline_defaults(self) -> Settings:
        """The worker's defaults are checked like a push's options, so a bad
        ``LIPSYNC_DEFAULT_ENGINE`` stops the API and the worker at start-up instead of
        failing every job."""
        for name, env, value in (
            ("engine", "DEFAULT_ENGINE", self.default_engine),
            ("enhancer", "DEFAULT_ENHANCER", self.default_enhancer),
            ("device", "DEVICE", self.device),
            ("max_size", "MAX_OUTPUT_SIZE", self.max_output_size),
        ):
            try:
                spec_of(name).check(value)
            except InvalidOption as exc:
                raise ValueError(f"LIPSYNC_{env}: {exc.message}") from None
        return self

    @model_validator(mode="after")
    def _check_time_limits(self) -> Settings:
        if self.hard_time_limit_s <= self.soft_time_limit_s:
            raise ValueError("LIPSYNC_HARD_TIME_LIMIT_S must be greater than the soft limit")
        if self.visibility_timeout_s < MIN_VISIBILITY_S:
            raise ValueError(
                f"LIPSYNC_VISIBILITY_TIMEOUT_S must be at least {MIN_VISIBILITY_S}: a running "
                "job's message would be handed to another worker between two renewals"
            )
        return self

    @property
    def served_hosts(self) -> list[str]:
        """The Host names requests may carry: allowed_hosts plus the bind address."""
        wildcard = self.host in ("0.0.0.0", "::", "")
        return [*self.allowed_hosts, *([] if wildcard else [self.host])]

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @cached_property
    def media_limits(self) -> MediaLimits:
        return MediaLimits(
            max_width=self.max_width,
            max_height=self.max_height,
            max_duration_s=self.max_duration_s,
            max_streams=self.max_streams,
            max_file_bytes=self.max_upload_bytes,
            probe_timeout_s=self.probe_timeout_s,
        )

    def ensure_dirs(self) -> None:
        for path in (self.uploads_dir, self.results_dir, self.work_dir):
            path.mkdir(parents=True, exist_ok=True)

    # CORS: origins (scheme://host[:port], comma-separated; "*" for any) whose pages may call
    # the API from a browser. Empty: no CORS headers (browsers refuse other origins).
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_max_age_s: int = Field(default=600, ge=0)  # how long a browser caches a preflight
    # GET /events (Server-Sent Events): how often it reads the job, and the keep-alive
    # comment sent when nothing changed for this long.
    events_poll_s: float = Field(default=0.5, gt=0, le=10)
    events_keepalive_s: float = Field(default=15.0, gt=0, le=300)
    # Open event streams per API key (per caller when no keys are set) in one API process;
    # one more is answered 429 too_many_streams. Each open stream polls Redis.
    events_max_per_key: int = Field(default=8, ge=1, le=10000)
    # DELETE /jobs/{task_id} of a running job waits this long for its worker to stop.
    delete_wait_s: float = Field(default=30.0, ge=0, le=600)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    # URL inputs: a push's video_url / audio_url, fetched by the worker. Hosts exempt from
    # the SSRF guard (comma-separated names or IP literals, as written in the URLs), the
    # connect timeout, and the deadline of one input's whole transfer (redirects included).
    fetch_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    fetch_connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    fetch_timeout_s: float = Field(default=600.0, gt=0)

    # Webhooks: a push's webhook_url is POSTed the job's final status, signed with this
    # secret (HMAC-SHA256; empty: webhooks are off and a push naming one is refused).
    # Attempts until a 2xx: webhook_max_attempts, the n-th retry webhook_backoff_s * 2**(n-1)
    # after the one before; each attempt has its own connect and total time limits. Hosts
    # exempt from the SSRF guard, as LIPSYNC_FETCH_ALLOW is for URL inputs.
    webhook_secret: SecretStr = SecretStr("")
    webhook_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    webhook_backoff_s: float = Field(default=120.0, gt=0, le=86400)
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_poll_s: float = Field(default=1.0, gt=0, le=60)  # how often due ones are looked for

    @field_validator("webhook_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (or empty: webhooks off)")
        return value

    @field_validator("fetch_allow", "webhook_allow", mode="before")
    @classmethod
    def _split_fetch_allow(cls, value: object) -> object:
        if isinstance(value, str):
            hosts = (h.strip().strip("[]").rstrip(".").lower() for h in value.split(","))
            return [h for h in hosts if h]
        return value


def load_settings() -> Settings:
    """``Settings()`` from the environment, or exit with one line per bad variable (the API
    and the worker call this at start-up, so a misconfiguration stops them at once)."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"])
            name = f"LIPSYNC_{where.upper()}: " if where else ""
            lines.append(f"  {name}{error['msg'].removeprefix('Value error, ')}")
        raise SystemExit("lipsync: bad settings\n" + "\n".join(lines)) from None
