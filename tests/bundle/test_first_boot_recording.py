"""First boot hands a media node its region's recording store, as RTCFLEET_RECORDING_* variables,
from the settings document the region stack wrote."""

from __future__ import annotations

from infra.recordings import azure_blob_document, recording_environment, s3_document
from media_node.recording.settings import RecordingSettings
from media_node.settings import MediaNodeSettings
from rtcfleet.bundle.first_boot import NodeFacts, media_environment

SECRETS = {"clusterSecret": "c" * 32, "redisAuthToken": "r" * 24, "dbPassword": "p" * 24}


def _facts(cloud: str, recording: dict[str, object] | None) -> NodeFacts:
    settings: dict[str, object] = {
        "redis": {"host": "redis.internal", "port": 6379, "tls": True},
        "postgres": {"readHost": "replica.internal", "port": 5432, "user": "rtcfleet"},
        "signalingUrl": "http://10.10.1.254:8080/internal/",
    }
    if recording is not None:
        settings["recording"] = recording
    return NodeFacts(
        cloud, "media", "prod", "eu-west-1", "i-1", "10.11.0.5", "198.51.100.7", settings, SECRETS
    )


def test_s3_bucket_reaches_the_media_node() -> None:
    bucket = "rtcfleet-prod-eu-west-1-recordings-402938475610"
    env = media_environment(_facts("aws", s3_document(bucket, "eu-west-1")))
    assert {k: v for k, v in env.items() if k.startswith("RTCFLEET_RECORDING_")} == {
        "RTCFLEET_RECORDING_STORE": "s3",
        "RTCFLEET_RECORDING_BUCKET": bucket,
        "RTCFLEET_RECORDING_REGION": "eu-west-1",
        "RTCFLEET_RECORDING_PREFIX": "recordings/",
    }


def test_blob_container_reaches_the_media_node() -> None:
    url = "https://recprodweu335d67f9.blob.core.windows.net/recordings"
    env = media_environment(_facts("azure", azure_blob_document(url)))
    assert env["RTCFLEET_RECORDING_STORE"] == "azure-blob"
    assert env["RTCFLEET_RECORDING_CONTAINER_URL"] == url
    assert "RTCFLEET_RECORDING_BUCKET" not in env


def test_no_store_no_variables_and_the_media_settings_still_load(monkeypatch) -> None:
    assert recording_environment({}) == {}
    env = media_environment(_facts("aws", s3_document("b", "eu-west-1")))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # the recording variables live beside the media node's own model, which ignores them
    assert MediaNodeSettings().region == "eu-west-1"
    # and the recorder's model reads them as the store to upload to
    recording = RecordingSettings()
    assert recording.uses("s3") and not recording.uses("azure-blob")
    assert (recording.bucket, recording.region, recording.prefix) == (
        "b",
        "eu-west-1",
        "recordings/",
    )


def test_the_recorder_reads_the_blob_container(monkeypatch) -> None:
    url = "https://recprodweu335d67f9.blob.core.windows.net/recordings"
    for key, value in media_environment(_facts("azure", azure_blob_document(url))).items():
        monkeypatch.setenv(key, value)
    recording = RecordingSettings()
    assert recording.uses("azure-blob") and recording.container_url == url
