"""The node's uploader: moves whole segments and manifests from the spool folder to every
configured store while calls go on, in the supervisor (workers never speak HTTP).

A segment leaves the spool once every store has it. A manifest is uploaded after the segments
it names (each pass uploads segments first) and again whenever the worker rewrites it; it
leaves the spool when its recording has stopped. A failed upload is retried with exponential
backoff and jitter, up to ``upload_backoff_max_s`` between tries, while the spool bound
(``SpoolBudget``) keeps the disk from filling during a long outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from media_node.recording.manifest import MANIFEST_NAME
from media_node.recording.settings import RecordingSettings
from media_node.recording.stores import ObjectStore, configured_stores

log = logging.getLogger(__name__)

SCAN_INTERVAL_S = 0.5
FIRST_BACKOFF_S = 0.5
# a manifest nobody rewrote for this long belongs to a recording whose worker died
ORPHAN_MANIFEST_S = 600.0
DRAIN_FLUSH_TIMEOUT_S = 30.0
CONTENT_TYPES = {".webm": "video/webm", ".json": "application/json"}


@dataclass
class _Pending:
    stores_done: set[str] = field(default_factory=set)
    failures: int = 0
    retry_at: float = 0.0
    # (inode, mtime) of the version uploaded last, for manifests rewritten in place
    version: tuple[int, int] | None = None


@dataclass
class UploadStats:
    uploaded: int = 0
    bytes: int = 0
    failures: int = 0
    seconds: float = 0.0


class Uploader:
    def __init__(
        self,
        settings: RecordingSettings,
        stores: list[ObjectStore],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = settings.spool_dir
        self.stores = stores
        self._backoff_max = settings.upload_backoff_max_s
        self._clock = clock
        self._pending: dict[Path, _Pending] = {}
        self.stats = UploadStats()

    def ready_files(self) -> list[Path]:
        """Whole files in the spool: segments (oldest first), then manifests."""
        segments: list[tuple[float, Path]] = []
        manifests: list[Path] = []
        for directory, _, names in os.walk(self.root):
            for name in names:
                path = Path(directory) / name
                if name == MANIFEST_NAME:
                    manifests.append(path)
                elif name.endswith(".webm"):
                    with contextlib.suppress(FileNotFoundError):
                        segments.append((path.stat().st_mtime, path))
        return [p for _, p in sorted(segments)] + manifests

    async def upload_pending(self) -> int:
        """One pass over the spool; returns how many files still wait."""
        waiting = 0
        for path in self.ready_files():
            if not await self._upload(path):
                waiting += 1
        return waiting

    async def _upload(self, path: Path) -> bool:
        """Upload one file to every store that lacks it; True when it is done with."""
        plan = self._plan(path)
        if isinstance(plan, bool):
            return plan
        pending, stat, stopped = plan
        key = path.relative_to(self.root).as_posix()
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        for store in self.stores:
            if store.name in pending.stores_done:
                continue
            started = time.monotonic()
            try:
                await asyncio.to_thread(store.put, key, path, content_type)
            except Exception as exc:  # any store error: keep the file, try again later
                pending.failures += 1
                self.stats.failures += 1
                delay = min(self._backoff_max, FIRST_BACKOFF_S * 2 ** (pending.failures - 1))
                pending.retry_at = self._clock() + delay * random.uniform(0.5, 1.0)
                log.warning(
                    "upload of %s to %s failed (try %d, next in %.1f s): %s",
                    key,
                    store.name,
                    pending.failures,
                    delay,
                    exc,
                )
                return False
            self.stats.uploaded += 1
            self.stats.bytes += stat.st_size
            self.stats.seconds += time.monotonic() - started
            pending.stores_done.add(store.name)
        pending.failures, pending.version = 0, (stat.st_ino, stat.st_mtime_ns)
        if path.name == MANIFEST_NAME:
            return self._keep_or_drop(path, stat, stopped=stopped)
        self._drop(path, stat)
        return True

    def _plan(self, path: Path) -> tuple[_Pending, os.stat_result, bool] | bool:
        """What uploading ``path`` takes now, or whether it is done (True) or must wait."""
        pending = self._pending.setdefault(path, _Pending())
        if self._clock() < pending.retry_at:
            return False
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._pending.pop(path, None)
            return True
        if path.name != MANIFEST_NAME:
            return pending, stat, False
        if pending.version == (stat.st_ino, stat.st_mtime_ns) and len(pending.stores_done) == len(
            self.stores
        ):
            return self._keep_or_drop(path, stat, stopped=False)
        pending.stores_done.clear()  # rewritten since: every store gets the new one
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            return False  # replaced while read: the next pass reads the new one
        if self._names_spooled_segments(path.parent, content):
            return False  # it would name segments the stores do not have yet
        return pending, stat, content.get("state") == "stopped"

    def _keep_or_drop(self, path: Path, stat: os.stat_result, *, stopped: bool) -> bool:
        """An uploaded manifest stays while its recording goes on (the worker rewrites it);
        a stopped one, or one nobody rewrote for ``ORPHAN_MANIFEST_S``, leaves the spool."""
        if stopped or time.time() - stat.st_mtime > ORPHAN_MANIFEST_S:
            self._drop(path, stat)
        return True

    def _drop(self, path: Path, stat: os.stat_result) -> None:
        self._pending.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            now = path.stat()
            if (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns):
                path.unlink()
                self._prune(path.parent)

    @staticmethod
    def _names_spooled_segments(folder: Path, content: dict[str, object]) -> bool:
        tracks = content.get("tracks")
        if not isinstance(tracks, list):
            return False
        return any(
            (folder / str(segment.get("key", ""))).exists()
            for track in tracks
            if isinstance(track, dict)
            for segment in track.get("segments", [])
            if isinstance(segment, dict)
        )

    def _prune(self, directory: Path) -> None:
        """Remove folders left empty, up to the spool root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def idle(self) -> bool:
        """Nothing but live manifests (already uploaded) left in the spool."""
        return all(
            path.name == MANIFEST_NAME
            and (p := self._pending.get(path)) is not None
            and p.version is not None
            and len(p.stores_done) == len(self.stores)
            for path in self.ready_files()
        )

    async def run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                await self.upload_pending()
            except OSError as exc:
                log.error("spool scan failed: %s", exc)
            await asyncio.sleep(SCAN_INTERVAL_S)

    async def flush(self, timeout: float) -> bool:
        """Upload what is left (on drain or shutdown), for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.upload_pending() == 0 and self.idle():
                return True
            await asyncio.sleep(SCAN_INTERVAL_S)
        return False


@contextlib.asynccontextmanager
async def recording_uploads(
    flush_timeout_s: float = DRAIN_FLUSH_TIMEOUT_S,
) -> AsyncIterator[Uploader | None]:
    """The node's uploader for as long as the node runs; on the way out, what the workers'
    last segments and manifests left in the spool is uploaded (bounded). Invalid
    ``RTCFLEET_RECORDING_*`` settings stop the node at start, naming the setting."""
    settings = RecordingSettings()
    if not settings.enabled:
        yield None
        return
    uploader = Uploader(settings, configured_stores(settings))
    task = asyncio.create_task(uploader.run(), name="recording-uploads")
    try:
        yield uploader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not await uploader.flush(flush_timeout_s):
            log.warning("uploads left in %s after %.0f s", settings.spool_dir, flush_timeout_s)
