"""The one configuration object, read from the environment (prefix ``PHONEREADER_``; ``REDIS_URL`` too).

Every process (gateway, worker, CLI) builds it once with :func:`get_settings`; nothing else reads the
environment, so a deployment is described completely by its environment variables.
"""

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from phonereader import ROOT

MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHONEREADER_", env_file=".env", extra="ignore")

    # --- queue and job store -------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "PHONEREADER_REDIS_URL"),
    )
    result_ttl_s: int = Field(86_400, ge=60, description="How long finished jobs stay readable.")
    queue_limit: int = Field(10_000, ge=1, description="Pending tasks above which POST answers 503.")
    sync_timeout_s: float = Field(20.0, gt=0, description="How long /api/recognize waits before 504.")

    # --- model and runtime ---------------------------------------------------------------
    model_path: Path = Field(ROOT / "models" / "default.json", description="The model's metadata JSON.")
    second_opinion: bool = Field(True, description="Ask the second-opinion models the card names about doubtful crops.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    runtime: Literal["auto", "onnx", "torch"] = "auto"
    # defaults from `phonereader bench batcher` and `phonereader bench queue` (see README)
    batch_max_size: int = Field(128, ge=1, description="Most digit crops in one forward pass.")
    batch_max_delay_ms: float = Field(1.0, ge=0, description="Longest wait to fill a batch.")

    # --- recognition -----------------------------------------------------------------------
    default_region: str = Field("US", min_length=2, max_length=2)
    review_threshold: float = Field(0.90, ge=0, le=1, description="Digits below this need review.")

    # --- untrusted input limits ----------------------------------------------------------
    max_upload_bytes: int = Field(50 * 2**20, ge=1)
    max_files: int = Field(1_000, ge=1)
    max_pixels: int = Field(40_000_000, ge=1, description="Largest image (w*h) we decode.")
    max_pages: int = Field(500, ge=1, description="Most pages read from one TIFF or PDF.")
    max_archive_entries: int = Field(5_000, ge=1)
    max_archive_bytes: int = Field(500 * 2**20, ge=1, description="Most bytes unpacked from one zip.")

    # --- service: gateway, workers, job store (api/, worker/) ------------------------------
    host: str = Field("127.0.0.1", description="Where the gateway listens.")
    port: int = Field(8000, ge=0, le=65535)
    redis_prefix: str = Field("phonereader", min_length=1, description="Prefix of every job-store key.")
    queue_name: str = Field("phonereader", min_length=1, description="The Celery queue workers consume.")
    max_items: int = Field(10_000, ge=1, description="Most items (images, pages, zip entries) in one job.")
    task_chunk_size: int = Field(1, ge=1, description="Items per Celery task when a job is split.")
    priority_max_items: int = Field(16, ge=0, description="Jobs this small jump ahead of bulk jobs.")
    worker_concurrency: int = Field(8, ge=1, description="Task threads per worker process (they share one model).")
    worker_prefetch_multiplier: int = Field(2, ge=1, description="Messages reserved per task thread.")
    worker_model_threads: int = Field(
        1, ge=0, description="ONNX Runtime threads per worker (0: one per core). Scale with worker processes instead."
    )
    visibility_timeout_s: int = Field(
        120, ge=10, description="An unacknowledged task is redelivered after this long (its worker died)."
    )
    max_attempts: int = Field(3, ge=1, description="Deliveries of one item before it fails as a poison item.")
    heartbeat_s: float = Field(2.0, gt=0, description="How often a worker says it is alive (and flushes metrics).")
    poll_after_s: int = Field(1, ge=1, description="Retry-After sent while a job is unfinished.")
    state_dir: Path = Field(
        Path.home() / ".cache" / "phonereader", description="`phonereader up` keeps its Redis AOF files here."
    )

    # --- security: the gateway may face the internet (api/security.py) ---------------------
    api_keys: Annotated[list[str], NoDecode] = Field(
        [], description="'name:key' pairs (comma-separated or a JSON list). Empty: no key needed. With keys, "
        "a job is visible only to the client (name) that created it; two keys with one name share its jobs.")
    api_key_header: str = Field("X-API-Key", min_length=1, description="The header that carries the API key.")
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Job API requests (submit, poll, delete) per client per minute; 0: unlimited. "
        "A client is an API key's name, or the remote address when keys are off.")
    rate_limits: Annotated[dict[str, int], NoDecode] = Field(
        {}, description="Per-client overrides of rate_limit_per_minute: 'name:limit' pairs or a JSON object.")
    keep_alive_s: int = Field(
        75, ge=1, description="Gateway HTTP keep-alive. Keep it above the idle timeout of clients and proxies: "
        "a client that reuses a connection the server is just closing loses that request.")
    worker_task_events: bool = Field(
        False, description="Workers (and the gateway) publish Celery task events, for Flower's task views.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="Origins allowed to call the API from a browser (comma-separated); empty: same origin only.")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value):
        """Environment variables hold either a JSON list or plain comma-separated text."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        return value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _comma_dict(cls, value):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            pairs = [v.strip().rsplit(":", 1) for v in text.split(",") if v.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("expected 'name:limit' pairs, comma-separated")
            return {name.strip(): limit.strip() for name, limit in pairs}
        return value

    # --- data ----------------------------------------------------------------------------
    mnist_dir: Path = Field(MNIST_DIR, description="Where the four MNIST IDX .gz files live.")

    # --- corrections loop: users fix readings, the model learns (api/corrections.py) -----------
    corrections_enabled: bool = Field(
        True, description="Accept corrections. Off: workers keep no crops and nothing is written to disk.")
    corrections_dir: Path | None = Field(
        None, description="The corrections data set (PNG folders + manifest.jsonl). Default: <state_dir>/corrections.")
    admin_token: str = Field(
        "", description="Secret for admin endpoints (X-Admin-Token header), e.g. the corrections export. Empty: off.")
    model_reload_s: float = Field(
        2.0, ge=0, description="How often a worker checks its model card for a new model (between batches); 0: never.")

    @property
    def corrections_path(self) -> Path:
        return self.corrections_dir or self.state_dir / "corrections"


@lru_cache
def get_settings() -> Settings:
    return Settings()
