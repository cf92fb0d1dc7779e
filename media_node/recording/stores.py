"""Where recordings go: an S3 bucket (boto3) or an Azure Blob container (azure-storage-blob).

Each segment is its own object, written once: a single PUT below ``MULTIPART_THRESHOLD`` and
a multipart upload above it (boto3's transfer manager; Azure's client stages blocks the same
way above its single-put size). One multipart object per track would keep nothing of a
recording whose node died before completing it, and S3 parts under 5 MiB are refused, while a
4 s segment of 640x360 VP8 is well under 1 MiB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from media_node.recording.settings import RecordingSettings

MULTIPART_THRESHOLD = 8 * 1024 * 1024
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 20.0


class ObjectStore(Protocol):
    name: str

    def put(self, key: str, path: Path, content_type: str) -> None:
        """Write the file at ``path`` as object ``key``; raises on failure (the caller retries)."""


class S3Store:
    def __init__(
        self,
        bucket: str,
        region: str | None = None,
        endpoint: str | None = None,
        kms_key_id: str | None = None,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.name = f"s3://{bucket}"
        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"mode": "standard", "max_attempts": 3},
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
        )
        self._extra: dict[str, Any] = {}
        if kms_key_id:
            self._extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}

    def put(self, key: str, path: Path, content_type: str) -> None:
        self.client.upload_file(
            str(path),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type, **self._extra},
            Config=self._transfer,
        )


class AzureBlobStore:
    def __init__(self, container_url: str, account_key: str | None = None) -> None:
        from azure.storage.blob import ContainerClient

        self.name = container_url
        credential: Any
        if account_key:
            credential = {"account_name": _account_name(container_url), "account_key": account_key}
        else:
            from azure.identity import DefaultAzureCredential

            # the scale set's managed identity, granted write on the container by the stack
            credential = DefaultAzureCredential()
        self.container = ContainerClient.from_container_url(
            container_url,
            credential=credential,
            connection_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retry_total=2,
        )

    def put(self, key: str, path: Path, content_type: str) -> None:
        from azure.storage.blob import ContentSettings

        with path.open("rb") as data:
            self.container.upload_blob(
                key,
                data,
                overwrite=True,
                content_settings=ContentSettings(content_type=content_type),
            )


def _account_name(container_url: str) -> str:
    """The storage account of a container URL: the host's first label, or the first path
    part on an emulator (``http://127.0.0.1:10000/devstoreaccount1/container``)."""
    parsed = urlparse(container_url)
    parts = [p for p in parsed.path.split("/") if p]
    host = parsed.hostname or ""
    if host.replace(".", "").isdigit() or host == "localhost":
        return parts[0]
    return host.split(".")[0]


def configured_stores(settings: RecordingSettings) -> list[ObjectStore]:
    stores: list[ObjectStore] = []
    if settings.uses("s3") and settings.bucket:
        stores.append(
            S3Store(
                settings.bucket,
                settings.region,
                settings.s3_endpoint,
                settings.s3_kms_key_id,
            )
        )
    if settings.uses("azure-blob") and settings.container_url:
        key = settings.azure_account_key
        stores.append(
            AzureBlobStore(settings.container_url, key.get_secret_value() if key else None)
        )
    return stores
