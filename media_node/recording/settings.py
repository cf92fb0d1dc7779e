"""Recording settings of a media node, from ``RTCFLEET_RECORDING_*`` environment variables.

The region stack names its store (``STORE``, ``BUCKET`` and ``REGION``, or ``CONTAINER_URL``,
and ``PREFIX``), which the node's first boot writes into its environment; a node with neither
a bucket nor a container refuses to record, with an error that says so. The other variables
are the node's own (spool, segment length) or for tests (an S3 endpoint, an account key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RTCFLEET_RECORDING_"
DEFAULT_SPOOL_DIR = Path("/var/lib/rtcfleet/recordings")


class RecordingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    # "s3" or "azure-blob": the one store to write to; unset, every store configured below
    store: Literal["s3", "azure-blob"] | None = None
    # S3: the bucket, its region, an endpoint override (moto, S3-compatible stores), and a
    # customer-managed KMS key sent on each PUT (unset: the bucket's default encryption)
    bucket: str | None = None
    region: str | None = None
    s3_endpoint: str | None = None
    s3_kms_key_id: str | None = None
    # Azure Blob: https://<account>.blob.core.windows.net/<container>; the node's managed
    # identity writes to it, or the account key when one is set (Azurite)
    container_url: str | None = None
    azure_account_key: SecretStr | None = None
    # object names: <prefix><room>/<recording id>/...
    prefix: str = Field(default="recordings/", max_length=256)
    # segments wait here until every store has them; past the bound new segments are dropped
    spool_dir: Path = DEFAULT_SPOOL_DIR
    spool_max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)
    # a segment's length: what a node that dies loses at most, per track
    segment_s: float = Field(default=4.0, ge=1.0, le=60.0)
    upload_backoff_max_s: float = Field(default=30.0, gt=0)

    @field_validator("s3_endpoint", "container_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.rstrip("/") if url else url

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if prefix.startswith("/") or ".." in prefix.split("/"):
            raise ValueError(f"{prefix!r}: a prefix is relative and has no '..'")
        return prefix

    @model_validator(mode="after")
    def _store_named(self) -> RecordingSettings:
        if self.store == "s3" and not self.bucket:
            raise ValueError("store is s3: RTCFLEET_RECORDING_BUCKET is required")
        if self.store == "azure-blob" and not self.container_url:
            raise ValueError("store is azure-blob: RTCFLEET_RECORDING_CONTAINER_URL is required")
        return self

    def uses(self, store: Literal["s3", "azure-blob"]) -> bool:
        """Whether recordings go to ``store``."""
        configured = self.bucket if store == "s3" else self.container_url
        return bool(configured) and self.store in (None, store)

    @property
    def enabled(self) -> bool:
        """Whether the node has somewhere to upload recordings."""
        return self.uses("s3") or self.uses("azure-blob")
