"""Build the node bundle: one versioned archive that an image bake installs as it is.

The archive ``rtcfleet-node-<version>.tar.gz`` holds the rtcfleet wheel and the wheels of the
node services' dependencies pinned from ``requirements.lock`` (only what the gateway and the
media node need: no Pulumi, no test tools), a hash-checked ``requirements.txt``, the systemd
units, sysctl settings, the coturn template, the first-boot and health-check scripts, and
``install.sh``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rtcfleet import __version__
from rtcfleet.bundle import templates

ARCHIVE_PREFIX = "rtcfleet-node"
# What the gateway and the media node import; the lock supplies their pins and dependencies.
NODE_REQUIREMENTS = (
    "aiohttp",
    "aioice",
    "aiortc",
    "asyncpg",
    "av",
    "boto3",
    "opentelemetry-api",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-sdk",
    "prometheus-client",
    "pydantic",
    "pydantic-settings",
    "pyjwt",
    "pyyaml",
    "redis",
    "rich",
    "typer",
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)")


class BundleError(RuntimeError):
    """The bundle cannot be built; the message says which step failed."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class BundleSpec:
    source: Path
    out_dir: Path
    version: str | None = None
    python_version: str = "3.11"
    # pip ``--platform`` tags of the image; empty: this machine's own
    platforms: tuple[str, ...] = ()
    requirements: tuple[str, ...] = NODE_REQUIREMENTS

    @staticmethod
    def default_source() -> Path:
        return Path(__file__).resolve().parents[2]

    @property
    def lock(self) -> Path:
        return self.source / "requirements.lock"


@dataclass
class BuiltBundle:
    archive: Path
    version: str
    sha256: str
    size_bytes: int
    wheels: dict[str, str] = field(default_factory=dict)
    units: list[str] = field(default_factory=list)


def node_pins(lock_text: str, roots: tuple[str, ...] = NODE_REQUIREMENTS) -> dict[str, str]:
    """The lock's pins of ``roots`` and everything they pull in, read from uv's ``via`` notes."""
    pins: dict[str, str] = {}
    parents: dict[str, set[str]] = {}
    current: str | None = None
    for line in lock_text.splitlines():
        if match := _PIN.match(line):
            current = normalize(match[1])
            pins[current] = match[2]
            parents[current] = set()
        elif current is not None and (note := _VIA.match(line)):
            parents[current].add(normalize(note[1]))
    wanted = {normalize(root) for root in roots}
    if missing := wanted - pins.keys():
        raise BundleError(f"requirements.lock pins none of {sorted(missing)}")
    grew = True
    while grew:
        grew = False
        for name, via in parents.items():
            if name not in wanted and via & wanted:
                wanted.add(name)
                grew = True
    return {name: pins[name] for name in sorted(wanted)}


def default_version(source: Path) -> str:
    """rtcfleet's version, with the commit when built from a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short=10", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return __version__
    return f"{__version__}+g{commit}"


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-15:])
        raise BundleError(f"{what} failed ({result.returncode}):\n{tail}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_wheels(spec: BundleSpec, pins: dict[str, str], wheels: Path) -> None:
    requirements = wheels.parent / "pins.txt"
    requirements.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    argv = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--dest", str(wheels), "-r", str(requirements),
        "--python-version", spec.python_version,
    ]  # fmt: skip
    for platform in spec.platforms:
        argv += ["--platform", platform]
    if spec.platforms:
        argv += ["--implementation", "cp"]
    _run(argv, "downloading the pinned wheels")
    requirements.unlink()


def build_rtcfleet_wheel(source: Path, wheels: Path) -> Path:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if Path(uv).exists():
        argv = [uv, "build", "--wheel", "--quiet", "--out-dir", str(wheels), str(source)]
    else:
        argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
                str(source)]  # fmt: skip
    _run(argv, "building the rtcfleet wheel")
    built = sorted(wheels.glob("rtcfleet-*.whl"))
    if len(built) != 1:
        raise BundleError(f"expected one rtcfleet wheel, found {[p.name for p in built]}")
    return built[0]


def hashed_requirements(pins: dict[str, str], wheels: Path) -> str:
    """``name==version --hash=sha256:...`` for pip's ``--require-hashes`` install."""
    by_name: dict[str, list[Path]] = {}
    for wheel in wheels.glob("*.whl"):
        by_name.setdefault(normalize(wheel.name.split("-")[0]), []).append(wheel)
    lines = []
    for name, version in pins.items():
        files = by_name.get(name)
        if not files:
            raise BundleError(f"no wheel downloaded for {name}=={version}")
        hashes = " ".join(f"--hash=sha256:{_sha256(f)}" for f in sorted(files))
        lines.append(f"{name}=={version} {hashes}\n")
    return "".join(lines)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _archive(staging: Path, archive: Path) -> None:
    """A tar.gz whose members carry fixed owners and times, so rebuilds differ only by content."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        return info

    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging, arcname=staging.name, filter=clean)


def build_bundle(spec: BundleSpec) -> BuiltBundle:
    version = spec.version or default_version(spec.source)
    if not spec.lock.exists():
        raise BundleError(f"no {spec.lock}")
    pins = node_pins(spec.lock.read_text(), spec.requirements)
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rtcfleet-bundle-") as tmp:
        staging = Path(tmp) / f"{ARCHIVE_PREFIX}-{version}"
        wheels = staging / "wheels"
        wheels.mkdir(parents=True)
        download_wheels(spec, pins, wheels)
        build_rtcfleet_wheel(spec.source, wheels)
        _write(staging / "requirements.txt", hashed_requirements(pins, wheels))
        for name, text in templates.UNITS.items():
            _write(staging / "systemd" / name, text)
        _write(staging / "sysctl" / "90-rtcfleet.conf", templates.SYSCTL)
        _write(staging / "turn" / "turnserver.conf.template", templates.TURNSERVER_CONF.template)
        _write(staging / "bin" / "rtcfleet-first-boot", templates.FIRST_BOOT_SCRIPT, 0o755)
        _write(staging / "bin" / "rtcfleet-health-check", templates.HEALTH_CHECK_SCRIPT, 0o755)
        _write(staging / "install.sh", templates.INSTALL_SCRIPT, 0o755)
        _write(staging / "VERSION", version + "\n")
        wheel_hashes = {w.name: _sha256(w) for w in sorted(wheels.glob("*.whl"))}
        manifest = {
            "name": ARCHIVE_PREFIX,
            "version": version,
            "python": spec.python_version,
            "platforms": list(spec.platforms) or ["native"],
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "pins": pins,
            "wheels": wheel_hashes,
            "units": sorted(templates.UNITS),
        }
        _write(staging / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        archive = spec.out_dir / f"{staging.name}.tar.gz"
        _archive(staging, archive)
    digest = _sha256(archive)
    (archive.parent / (archive.name + ".sha256")).write_text(f"{digest}  {archive.name}\n")
    return BuiltBundle(
        archive=archive,
        version=version,
        sha256=digest,
        size_bytes=archive.stat().st_size,
        wheels=wheel_hashes,
        units=sorted(templates.UNITS),
    )


def bundle_version(archive: Path) -> str:
    """The version a bundle archive was built as (its ``VERSION`` file)."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name.count("/") == 1 and member.name.endswith("/VERSION"):
                handle = tar.extractfile(member)
                if handle is not None:
                    return io.TextIOWrapper(handle).read().strip()
    raise BundleError(f"{archive} holds no VERSION")
