"""Recording settings of a media node, from ``RTCFLEET_RECORDING_*`` environment variables.

The region stack sets them (the bucket or container it creates for recordings); a node with
neither a bucket nor a container refuses to record, with an error that says so.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RTCFLEET_RECORDING_"
DEFAULT_SPOOL_DIR = Path("/var/lib/rtcfleet/recordings")


class RecordingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    # S3: the bucket, its region, and an endpoint override (moto, S3-compatible stores)
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_endpoint: str | None = None
    # a customer-managed KMS key; unset, the bucket's default encryption applies
    s3_kms_key_id: str | None = None
    # Azure Blob: https://<account>.blob.core.windows.net/<container>; the node's managed
    # identity writes to it, or the account key when one is set (Azurite)
    azure_container_url: str | None = None
    azure_account_key: SecretStr | None = None
    # object names: <prefix><room>/<recording id>/...
    prefix: str = Field(default="recordings/", max_length=256)
    # segments wait here until every store has them; past the bound new segments are dropped
    spool_dir: Path = DEFAULT_SPOOL_DIR
    spool_max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)
    # a segment's length: what a node that dies loses at most, per track
    segment_s: float = Field(default=4.0, ge=1.0, le=60.0)
    upload_backoff_max_s: float = Field(default=30.0, gt=0)

    @field_validator("s3_endpoint", "azure_container_url")
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

    @property
    def enabled(self) -> bool:
        """Whether the node has somewhere to upload recordings."""
        return bool(self.s3_bucket or self.azure_container_url)
