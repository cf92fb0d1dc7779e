"""Recordings of the rooms a worker hosts: one ``RoomRecording`` per recorded room, each
track of it written by a ``TrackRecorder`` into the spool folder, where the node's uploader
(``media_node.recording.uploader``) picks files up.

Spool layout = object layout: ``<spool>/<prefix><room>/<recording id>/manifest.json`` and
``.../<participant>/<kind>-<n>/<index>.webm``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from media_node.publisher import PublishedTrack
from media_node.recording import manifest
from media_node.recording.settings import RecordingSettings
from media_node.recording.track_recorder import (
    CLOCK_RATES,
    CODECS,
    SpoolBudget,
    TrackRecorder,
)
from rtcfleet.node_messages import NodeRecording, RecordingAnswer
from rtcfleet.signaling import RecordingStarted, RecordingStopped

log = logging.getLogger(__name__)

ToRoom = Callable[[str, BaseModel], None]
Answer = Callable[[str, RecordingAnswer], None]
TracksOf = Callable[[str], list[PublishedTrack]]
ParticipantsOf = Callable[[str], list[str]]


class RoomRecording:
    def __init__(
        self,
        room: str,
        node_id: str,
        settings: RecordingSettings,
        spool: SpoolBudget,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.room = room
        self.recording_id = (
            f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(clock()))}-" + (uuid.uuid4().hex[:8])
        )
        self.relative = f"{settings.prefix}{manifest.key_part(room)}/{self.recording_id}"
        self.folder = settings.spool_dir / self.relative
        self._settings = settings
        self._spool = spool
        self._clock = clock
        self.started = clock()
        self.recorders: dict[str, TrackRecorder] = {}
        self._track_numbers: dict[tuple[str, str], int] = {}
        self.manifest = manifest.Manifest(
            recording_id=self.recording_id,
            room=room,
            node_id=node_id,
            started_at=manifest.utc(self.started),
            updated_at=manifest.utc(self.started),
            segment_s=settings.segment_s,
        )

    @property
    def manifest_key(self) -> str:
        return f"{self.relative}/{manifest.MANIFEST_NAME}"

    def add_track(self, track: PublishedTrack) -> None:
        if track.track_id in self.recorders or track.kind not in CLOCK_RATES:
            return
        number_key = (track.publisher, track.kind)
        number = self._track_numbers.get(number_key, 0) + 1
        self._track_numbers[number_key] = number
        entry = manifest.Track(
            track_id=track.track_id,
            participant=track.publisher,
            kind="video" if track.kind == "video" else "audio",
            codec="VP8" if CODECS[track.kind] == "VP8" else "opus",
            clock_rate=CLOCK_RATES[track.kind],
        )
        self.manifest.tracks.append(entry)
        recorder = TrackRecorder(
            track,
            entry,
            self.folder,
            f"{manifest.key_part(track.publisher)}/{track.kind}-{number}",
            self.started,
            self._settings.segment_s,
            self._spool,
            on_segment=self.write_manifest,
            clock=self._clock,
        )
        self.recorders[track.track_id] = recorder
        track.downtracks.add(recorder)
        track.request_keyframe()
        self.write_manifest()

    def remove_track(self, track: PublishedTrack | None, track_id: str) -> None:
        recorder = self.recorders.pop(track_id, None)
        if recorder is None:
            return
        if track is not None:
            track.downtracks.discard(recorder)
        recorder.close()
        self.write_manifest()

    def joined(self, identity: str) -> None:
        self.manifest.participants.append(
            manifest.Participant(identity=identity, joined_at=manifest.utc(self._clock()))
        )
        self.write_manifest()

    def left(self, identity: str) -> None:
        for participant in self.manifest.participants:
            if participant.identity == identity and participant.left_at is None:
                participant.left_at = manifest.utc(self._clock())
        self.write_manifest()

    def write_manifest(self) -> None:
        ends = [end for r in self.recorders.values() if (end := r.segment_end()) is not None]
        ends += [
            s.started_at.timestamp() + s.duration_s
            for t in self.manifest.tracks
            if t.track_id not in self.recorders
            for s in t.segments[-1:]
        ]
        if ends:
            self.manifest.recorded_until = manifest.utc(max(ends))
        self.manifest.updated_at = manifest.utc(self._clock())
        try:
            self.manifest.write(self.folder / manifest.MANIFEST_NAME)
        except OSError as exc:
            log.error("manifest of %s not written: %s", self.recording_id, exc)

    def stop(self, reason: manifest.StopReason, tracks: list[PublishedTrack]) -> None:
        by_id = {t.track_id: t for t in tracks}
        for track_id, recorder in list(self.recorders.items()):
            track = by_id.get(track_id)
            if track is not None:
                track.downtracks.discard(recorder)
            recorder.close()
        now = self._clock()
        for participant in self.manifest.participants:
            if participant.left_at is None:
                participant.left_at = manifest.utc(now)
        self.manifest.state = "stopped"
        self.manifest.stop_reason = reason
        self.manifest.stopped_at = manifest.utc(now)
        self.write_manifest()
        self.recorders.clear()

    def answer(self) -> RecordingAnswer:
        return RecordingAnswer(
            ok=True,
            room=self.room,
            recording_id=self.recording_id,
            state=self.manifest.state,
            started_at=self.manifest.started_at.isoformat(),
            stopped_at=self.manifest.stopped_at.isoformat() if self.manifest.stopped_at else None,
            manifest_key=self.manifest_key,
        )


class Recordings:
    """The worker's side: recording commands, and the room events a recording follows."""

    def __init__(
        self,
        tracks_of: TracksOf,
        participants_of: ParticipantsOf,
        to_room: ToRoom,
        answer: Answer,
        settings: RecordingSettings | None = None,
    ) -> None:
        self._tracks_of = tracks_of
        self._participants_of = participants_of
        self._to_room = to_room
        self._answer = answer
        self.rooms: dict[str, RoomRecording] = {}
        self.settings_error: str | None = None
        if settings is None:
            try:
                settings = RecordingSettings()
            except ValidationError as exc:
                self.settings_error = str(exc)
                log.error("recording settings invalid; recording refused: %s", exc)
        self.settings = settings
        self.spool = SpoolBudget(settings.spool_dir, settings.spool_max_bytes) if settings else None

    def handle(self, command: NodeRecording) -> None:
        if command.action == "start":
            self._answer(command.reply, self.start(command.room, command.node_id))
        else:
            self._answer(command.reply, self.stop(command.room, "requested"))

    def start(self, room: str, node_id: str) -> RecordingAnswer:
        current = self.rooms.get(room)
        if current is not None:
            return current.answer()  # starting twice is the same recording
        if self.settings is None or self.spool is None or not self.settings.enabled:
            return RecordingAnswer(
                ok=False,
                room=room,
                error="recording_not_configured",
                detail=self.settings_error
                or "the media node has no recording bucket or container (RTCFLEET_RECORDING_*)",
            )
        participants = self._participants_of(room)
        if not participants:
            return RecordingAnswer(ok=False, room=room, error="room_not_found")
        recording = RoomRecording(room, node_id, self.settings, self.spool)
        self.rooms[room] = recording
        for identity in participants:
            recording.joined(identity)
        for track in self._tracks_of(room):
            recording.add_track(track)
        recording.write_manifest()
        self._to_room(
            room,
            RecordingStarted(
                recording_id=recording.recording_id,
                started_at=recording.manifest.started_at.isoformat(),
            ),
        )
        log.info("recording %s of room %s started", recording.recording_id, room)
        return recording.answer()

    def stop(self, room: str, reason: manifest.StopReason) -> RecordingAnswer:
        recording = self.rooms.pop(room, None)
        if recording is None:
            return RecordingAnswer(ok=False, room=room, error="not_recording")
        recording.stop(reason, self._tracks_of(room))
        if reason != "room_ended":
            self._to_room(
                room, RecordingStopped(recording_id=recording.recording_id, reason=reason)
            )
        log.info("recording %s of room %s stopped (%s)", recording.recording_id, room, reason)
        return recording.answer()

    # ---- room events ----

    def track_published(self, room: str, payload: dict[str, Any]) -> None:
        recording = self.rooms.get(room)
        if recording is None:
            return
        for track in self._tracks_of(room):
            if track.track_id == payload.get("track_id"):
                recording.add_track(track)

    def track_unpublished(self, room: str, payload: dict[str, Any]) -> None:
        recording = self.rooms.get(room)
        if recording is not None:
            track_id = str(payload.get("track_id"))
            track = next((t for t in self._tracks_of(room) if t.track_id == track_id), None)
            recording.remove_track(track, track_id)

    def joined(self, room: str, identity: str) -> RecordingStarted | None:
        """A newcomer: noted in the manifest; the message it is owed, if the room is recorded."""
        recording = self.rooms.get(room)
        if recording is None:
            return None
        recording.joined(identity)
        return RecordingStarted(
            recording_id=recording.recording_id,
            started_at=recording.manifest.started_at.isoformat(),
        )

    def left(self, room: str, identity: str) -> None:
        recording = self.rooms.get(room)
        if recording is not None:
            recording.left(identity)

    def room_ended(self, room: str) -> None:
        if room in self.rooms:
            self.stop(room, "room_ended")

    def close(self) -> None:
        """The worker stops (drain, shutdown): every recording ends with its current segment."""
        for room in list(self.rooms):
            self.stop(room, "node_stopped")
