"""Object stores on loopback for recording tests: moto's S3 server and Azurite (npm, installed
into a cache folder by ``scripts/azurite`` on first use), and a fleet whose media node uploads
to both."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.storage.blob import ContainerClient
from moto.server import ThreadedMotoServer

from rtcfleet.local import FleetSpec, LocalFleet
from rtcfleet.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "rtcfleet-recordings"
CONTAINER = "recordings"
# Azurite's well-known development account (public, in Microsoft's documentation)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SEGMENT_S = 4.0


@dataclass
class ObjectStores:
    s3_endpoint: str
    azure_container_url: str

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def azure(self) -> ContainerClient:
        return ContainerClient.from_container_url(
            self.azure_container_url,
            credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        )

    def s3_get(self, key: str) -> bytes:
        return bytes(self.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def azure_get(self, key: str) -> bytes:
        return bytes(self.azure().download_blob(key).readall())


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"azurite exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"azurite did not listen on {port} within {timeout:.0f} s")


@pytest.fixture(scope="session")
def object_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStores]:
    s3_port, blob_port = free_port(), free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    subprocess.run([ROOT / "scripts" / "azurite", "--install-only"], check=True, timeout=600)
    azurite = subprocess.Popen(
        [
            ROOT / "scripts" / "azurite",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob_port),
            "--location",
            str(tmp_path_factory.mktemp("azurite")),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(blob_port, azurite)
        stores = ObjectStores(
            s3_endpoint=f"http://127.0.0.1:{s3_port}",
            azure_container_url=f"http://127.0.0.1:{blob_port}/{AZURITE_ACCOUNT}/{CONTAINER}",
        )
        stores.s3().create_bucket(Bucket=BUCKET)
        stores.azure().create_container()
        yield stores
    finally:
        azurite.terminate()
        azurite.wait(10)
        moto.stop()


def recording_env(stores: ObjectStores, spool: Path) -> dict[str, str]:
    return {
        **FAKE_AWS,
        "RTCFLEET_RECORDING_BUCKET": BUCKET,
        "RTCFLEET_RECORDING_REGION": "us-east-1",
        "RTCFLEET_RECORDING_S3_ENDPOINT": stores.s3_endpoint,
        "RTCFLEET_RECORDING_CONTAINER_URL": stores.azure_container_url,
        "RTCFLEET_RECORDING_AZURE_ACCOUNT_KEY": AZURITE_KEY,
        "RTCFLEET_RECORDING_SPOOL_DIR": str(spool),
        "RTCFLEET_RECORDING_SEGMENT_S": str(SEGMENT_S),
    }


@pytest.fixture(scope="session")
def recording_fleet(
    object_stores: ObjectStores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalFleet]:
    """One region, one gateway, one media node of one worker, recording to both stores."""
    spool = tmp_path_factory.mktemp("spool")
    fleet = LocalFleet(
        FleetSpec(
            regions=1,
            gateways=1,
            media=1,
            workers_per_node=1,
            media_env=recording_env(object_stores, spool),
        )
    ).start()
    yield fleet
    fleet.remove()
