"""Postgres servers for the local fleet and tests: a primary and streaming read replicas.

Binaries come from the ``pgserver`` wheel (Postgres 16); a system installation is used
instead only when it is newer. Postgres refuses to run as root, so under root the servers
run as an unprivileged system user that owns their data folders. That user cannot enter a
checkout under ``/root`` or in a private (0700) folder, so there the servers run from a linked
copy of the installation in a temporary folder it can reach, removed when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path

from rtcfleet.servers.ports import LOCAL, Bind, free_port
from rtcfleet.servers.process import ServerProcess

SUPERUSER = "postgres"
RUN_AS_USER = "rtcfleet-pg"
_REQUIRED = ("postgres", "initdb", "pg_basebackup", "pg_ctl", "pg_isready")


def _major_version(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


@cache
def postgres_bindir() -> Path:
    """The bin folder of the newest complete Postgres installation at hand."""
    candidates: list[Path] = []
    # located, not imported: importing pgserver sets up state we do not use
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    complete = [d for d in candidates if all((d / name).exists() for name in _REQUIRED)]
    if not complete:
        raise FileNotFoundError("no Postgres server binaries: install rtcfleet[local] (pgserver)")
    bindir = max(complete, key=_major_version)
    return bindir if _server_user_can_run(bindir) else _reachable_copy(bindir)


def _server_user_can_run(bindir: Path) -> bool:
    user = server_user()
    if user is None:
        return True
    try:
        results = [
            subprocess.run(
                [str(bindir / program), "--version"],
                capture_output=True,
                check=False,
                user=user,
                env=_env(),
            )
            for program in ("postgres", "initdb")  # initdb also loads libpq
        ]
    except OSError:
        return False
    return all(result.returncode == 0 for result in results)


def _reachable_copy(bindir: Path) -> Path:
    """The installation linked into a folder every user can enter; removed at exit.

    Postgres finds its lib and share folders relative to its binary, and pgserver's binaries
    load libpq from ``pgserver.libs`` three levels up, so the copy keeps that layout.
    """
    install = bindir.parent  # .../site-packages/pgserver/pginstall
    root = install.parent.parent
    copy = Path(tempfile.mkdtemp(prefix="rtcfleet-postgres-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    copy.chmod(0o755)
    target = copy / install.relative_to(root)
    for part in ("bin", "lib", "share"):
        if (install / part).is_dir():
            shutil.copytree(install / part, target / part, copy_function=_link_or_copy)
    vendored = root / f"{install.parent.name}.libs"
    if vendored.is_dir():
        shutil.copytree(vendored, copy / vendored.name, copy_function=_link_or_copy)
    if not _server_user_can_run(target / "bin"):
        raise PermissionError(
            f"user {server_user()} cannot run Postgres from {bindir} nor from a copy in {copy}"
        )
    return target / "bin"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@cache
def server_user() -> str | None:
    """The user Postgres runs as: ourselves, or under root a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                RUN_AS_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return "nobody"
    return RUN_AS_USER


def _make_owned_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    user = server_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def _run(argv: list[str]) -> None:
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, user=server_user(), env=_env()
    )
    if result.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr}")


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


class PostgresServer:
    """One Postgres server on loopback: a primary, or a streaming replica of another server."""

    def __init__(self, datadir: Path, *, port: int | None = None, bind: Bind = LOCAL) -> None:
        self.datadir = datadir
        self.bind = bind
        self.port = port or free_port()
        self.process: ServerProcess | None = None
        self.bindir = postgres_bindir()

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{self.bind.address}:{self.port}/postgres"

    def init_primary(self) -> PostgresServer:
        _make_owned_dir(self.datadir)
        _run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.datadir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )  # fmt: skip
        if self.bind != LOCAL:
            # off loopback (an address of its own, or a namespace of its own) the server is
            # reached over its subnet;
            # replicas copy this file with the data
            with (self.datadir / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet trust\nhost replication all samenet trust\n")
        return self

    def init_replica_of(self, primary: PostgresServer) -> PostgresServer:
        """Copy the primary with ``pg_basebackup -R`` so this server streams from it."""
        _make_owned_dir(self.datadir)
        _run(
            [
                str(self.bindir / "pg_basebackup"),
                "-h", primary.bind.address,
                "-p", str(primary.port),
                "-U", SUPERUSER,
                "-D", str(self.datadir),
                "-R",
                "-X", "stream",
                "-c", "fast",
                "--no-sync",
            ]
        )  # fmt: skip
        return self

    def start(self, timeout: float = 30.0) -> PostgresServer:
        argv = [
            str(self.bindir / "postgres"),
            "-D", str(self.datadir),
            "-c", f"listen_addresses={self.bind.address}",
            "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.datadir}",
            "-c", "wal_level=logical",  # physical replicas and subscribers in other clouds
            "-c", "max_wal_senders=10",
            "-c", "max_replication_slots=10",
            "-c", "hot_standby=on",
            "-c", "hot_standby_feedback=on",
            # without fsync only an operating-system crash loses data
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
        ]  # fmt: skip
        self.process = ServerProcess(
            f"postgres:{self.port}",
            argv,
            self.datadir.parent / f"{self.datadir.name}.log",
            user=server_user(),
            env=_env(),
            netns=self.bind.netns,
        )
        self.process.start()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        isready = [
            str(self.bindir / "pg_isready"), "-h", self.bind.address, "-p", str(self.port), "-q"
        ]  # fmt: skip
        while subprocess.run(isready, check=False).returncode != 0:
            self.process.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Postgres on port {self.port} not ready:\n{self.process.log_tail()}"
                )
            time.sleep(0.1)

    def promote(self) -> None:
        """Turn a replica into a read/write primary (the failover step)."""
        _run([str(self.bindir / "pg_ctl"), "promote", "-w", "-D", str(self.datadir)])

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT is Postgres's fast shutdown: abort sessions, checkpoint, exit
            self.process.stop(signal.SIGINT)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


class ReplicatedPostgres:
    """The settings database as deployed: one read/write primary, streaming read replicas."""

    def __init__(
        self, replicas: int = 1, workdir: Path | None = None, binds: list[Bind] | None = None
    ) -> None:
        """``binds``: where the primary listens, then each replica (default: loopback)."""
        if workdir is None:
            # not under a private temp folder: the unprivileged server user must reach it
            workdir = Path(tempfile.mkdtemp(prefix="rtcfleet-pg-"))
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o755)
        self.workdir = workdir
        binds = binds or [LOCAL] * (replicas + 1)
        if len(binds) != replicas + 1:
            raise ValueError(f"{replicas} replicas and a primary need {replicas + 1} binds")
        self.primary = PostgresServer(workdir / "primary", bind=binds[0])
        self.replicas = [
            PostgresServer(workdir / f"replica{i}", bind=binds[i + 1]) for i in range(replicas)
        ]

    def start(self) -> ReplicatedPostgres:
        self.primary.init_primary().start()
        for replica in self.replicas:
            replica.init_replica_of(self.primary).start()
        return self

    def stop(self) -> None:
        for server in (*self.replicas, self.primary):
            server.stop()

    def remove(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.workdir)
