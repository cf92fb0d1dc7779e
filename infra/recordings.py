"""Recording storage, cloud-neutral: the stack setting, and what reaches the media node.

Recordings are stored in the region where the call was recorded: one S3 bucket or one storage
account per region stack, never one per environment. A room lives on one media node in one
region, so its segments stay under that region's jurisdiction (data residency), travel over
the region's own network to storage (upload latency, no inter-region transfer charge), and a
region outage neither blocks recording in the others nor makes a region's ``pulumi up``
depend on another's storage.

The contract with the media node is declared here once: the region stack writes the
``recording`` object of the media node's settings document (``RECORDING_DOCUMENT``), and the
node's first boot turns it into the ``RTCFLEET_RECORDING_*`` environment variables
(``recording_environment``) that the recorder reads. Provider-free, so the node bundle and the
policy pack import it without the Pulumi SDKs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# the key of the media node's settings document that holds the store
RECORDING_DOCUMENT = "recording"
# every object a media node writes lies under this prefix (its write grant is limited to it)
RECORDING_PREFIX = "recordings/"
CONTAINER_NAME = "recordings"
# the store's kind, as the node's recorder selects its uploader
S3 = "s3"
AZURE_BLOB = "azure-blob"

# Environment variables of the media node (first boot writes them; the recorder reads them).
ENV_STORE = "RTCFLEET_RECORDING_STORE"
ENV_BUCKET = "RTCFLEET_RECORDING_BUCKET"
ENV_REGION = "RTCFLEET_RECORDING_REGION"
ENV_PREFIX = "RTCFLEET_RECORDING_PREFIX"
ENV_CONTAINER_URL = "RTCFLEET_RECORDING_CONTAINER_URL"

# S3 refuses a transition to its infrequent-access classes before 30 days; one floor for both.
MIN_COLD_AFTER_DAYS = 30
DEFAULT_COLD_AFTER_DAYS = 30
DEFAULT_EXPIRE_AFTER_DAYS = 365
# A segment upload that a killed node never completed, or an overwritten manifest's old
# versions, are kept this long and then removed.
INCOMPLETE_UPLOAD_DAYS = 7
DEFAULT_NONCURRENT_DAYS = 30


class RecordingSettings(BaseModel):
    """``rtcfleet:recordings``: how long recordings stay hot, and when they are deleted."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    # days after upload when segments move to cold storage (S3 Glacier Instant Retrieval /
    # Azure's Cold tier): still readable in milliseconds, billed lower per GB-month
    cold_after_days: int = Field(DEFAULT_COLD_AFTER_DAYS, ge=MIN_COLD_AFTER_DAYS, le=36500)
    # days after upload when recordings are deleted: a retention every recording gets
    expire_after_days: int = Field(DEFAULT_EXPIRE_AFTER_DAYS, ge=1, le=36500)
    # days an overwritten or deleted object's previous version is kept (versioning)
    noncurrent_days: int = Field(DEFAULT_NONCURRENT_DAYS, ge=1, le=365)

    @model_validator(mode="after")
    def _expire_after_cold(self) -> RecordingSettings:
        if self.expire_after_days <= self.cold_after_days:
            raise ValueError(
                f"expireAfterDays ({self.expire_after_days}) must come after coldAfterDays "
                f"({self.cold_after_days})"
            )
        return self


def s3_document(bucket: Any, region: str) -> dict[str, Any]:
    """The settings document's ``recording`` object for an S3 bucket (values may be outputs).

    No key id: the bucket encrypts with its own KMS key by default, so uploads send none."""
    return {"store": S3, "bucket": bucket, "region": region, "prefix": RECORDING_PREFIX}


def azure_blob_document(container_url: Any) -> dict[str, Any]:
    """The settings document's ``recording`` object for a blob container."""
    return {"store": AZURE_BLOB, "containerUrl": container_url, "prefix": RECORDING_PREFIX}


def recording_environment(settings: Mapping[str, Any]) -> dict[str, str]:
    """The ``RTCFLEET_RECORDING_*`` variables for a media node's settings document (none when
    the document names no store: the node then refuses to record)."""
    document = settings.get(RECORDING_DOCUMENT)
    if not isinstance(document, Mapping) or not document.get("store"):
        return {}
    store: Literal["s3", "azure-blob"] = document["store"]
    env = {ENV_STORE: str(store), ENV_PREFIX: str(document.get("prefix") or RECORDING_PREFIX)}
    for key, var in (
        ("bucket", ENV_BUCKET),
        ("region", ENV_REGION),
        ("containerUrl", ENV_CONTAINER_URL),
    ):
        if document.get(key):
            env[var] = str(document[key])
    return env
