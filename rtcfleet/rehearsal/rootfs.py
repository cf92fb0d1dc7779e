"""The Debian 12 root filesystem the rehearsal builds images in: ``debootstrap``, cached.

A root filesystem is keyed by suite, packages and mirror, built into a temporary folder and
renamed into place only when complete, so an interrupted build is never used; a missing one
is rebuilt. The mirror is the one this machine's apt uses.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from infra.image_build import IMAGE_PACKAGES

SUITE = "bookworm"
CACHE_ENV = "RTCFLEET_REHEARSAL_CACHE"
DEFAULT_CACHE = Path("/var/cache/rtcfleet/rehearsal")
# what a cloud's Debian 12 image has that debootstrap's minbase lacks, plus the image's packages
ROOTFS_PACKAGES = ("systemd", "systemd-sysv", "dbus", *IMAGE_PACKAGES)
SOURCES_DIRS = (Path("/etc/apt/sources.list.d"), Path("/etc/apt"))


class RehearsalError(RuntimeError):
    """The rehearsal cannot run here; the message says what is missing."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def debian_mirror(sources_dirs: tuple[Path, ...] = SOURCES_DIRS) -> str:
    """The first Debian mirror apt is configured with for ``SUITE`` (deb822 or one-line)."""
    for folder in sources_dirs:
        for path in sorted(folder.glob("*.sources")):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields = dict(
                    (key.strip().lower(), value.strip())
                    for key, _, value in (
                        line.partition(":") for line in stanza.splitlines() if ":" in line
                    )
                    if not key.startswith("#")
                )
                if SUITE in fields.get("suites", "").split() and "deb" in fields.get("types", ""):
                    return fields["uris"].split()[0]
        for path in sorted(folder.glob("*.list")):
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb" and words[-2] == SUITE:
                    return words[-3] if not words[1].startswith("[") else words[2]
    raise RehearsalError(f"no apt source for Debian {SUITE} in {[str(d) for d in sources_dirs]}")


def rootfs_key(mirror: str) -> str:
    spec = json.dumps([SUITE, sorted(ROOTFS_PACKAGES), mirror])
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def ensure_rootfs(cache: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """The cached root filesystem, built with ``debootstrap`` first when it is missing."""
    if shutil.which("debootstrap") is None:
        raise RehearsalError("debootstrap is not installed (apt-get install debootstrap)")
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    key = rootfs_key(mirror)
    target = cache / f"rootfs-{SUITE}-{key}"
    done = cache / f"rootfs-{SUITE}-{key}.done"
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; waiters then find it done
        if done.exists() and target.is_dir():
            return target
        shutil.rmtree(target, ignore_errors=True)
        building = cache / f".building-{key}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        log(f"debootstrap {SUITE} from {mirror} into {target} (about a minute)")
        started = time.monotonic()
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(ROOTFS_PACKAGES)}",
                SUITE,
                str(building),
                mirror,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            tail = "\n".join((result.stderr or result.stdout).splitlines()[-10:])
            raise RehearsalError(f"debootstrap failed ({result.returncode}):\n{tail}")
        building.rename(target)
        done.write_text(f"{time.monotonic() - started:.1f}\n")
        log(f"root filesystem built in {time.monotonic() - started:.0f} s")
    return target
