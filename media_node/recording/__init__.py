"""Recording on the media node: tracks written as they arrive into WebM segments (no decode,
no encode), a manifest per recording, and an uploader that moves both to S3 or Azure Blob."""

from media_node.recording.room_recording import Recordings, RoomRecording
from media_node.recording.settings import RecordingSettings

__all__ = ["RecordingSettings", "Recordings", "RoomRecording"]
