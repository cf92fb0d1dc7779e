"""Node images and instances under ``systemd-nspawn``: the build script run in a container, then
real systemd booting real units as their real users.

An image is an overlay layer over the cached root filesystem, written by running the image
build script (the one EC2 Image Builder and Azure run) in a container with no network. An
instance is one more overlay layer over the image, with what the cloud would have put there
before boot (hostname, user data), booted in its own network namespace.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.image_build import BUNDLE_PATH, image_build_commands
from rtcfleet.rehearsal.rootfs import RehearsalError

NSPAWN = "systemd-nspawn"
# cloud-init's job on a cloud image: run the instance's user data once, after the network
USER_DATA_UNIT = """\
[Unit]
Description=Instance user data (what cloud-init runs on a cloud image)
Wants=network-online.target
After=network-online.target
ConditionPathExists=/var/lib/rtcfleet-rehearsal/user-data

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/bash /var/lib/rtcfleet-rehearsal/user-data
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""


def _mount_overlay(lower: list[Path], upper: Path, work: Path, merged: Path) -> None:
    for folder in (upper, work, merged):
        folder.mkdir(parents=True, exist_ok=True)
    lowerdir = ":".join(str(p) for p in lower)
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    result = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RehearsalError(f"overlay mount failed: {result.stderr.strip()}")


def _unmount(merged: Path) -> None:
    subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)


@dataclass
class NodeImage:
    """The image build's layer over the root filesystem."""

    rootfs: Path
    layer: Path
    build_seconds: float = 0.0
    build_log: str = ""

    @property
    def lower(self) -> list[Path]:
        return [self.layer, self.rootfs]


def build_image(rootfs: Path, bundle: Path, workdir: Path, cloud: str = "none") -> NodeImage:
    """Runs the image build script on ``bundle`` in a container over ``rootfs``, offline."""
    if shutil.which(NSPAWN) is None:
        raise RehearsalError("systemd-nspawn is not installed (apt-get install systemd-container)")
    sha256 = hashlib.sha256(bundle.read_bytes()).hexdigest()
    layer, merged = workdir / "image-layer", workdir / "image-root"
    _mount_overlay([rootfs], layer, workdir / "image-work", merged)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [
                NSPAWN, "--quiet", "--register=no", "--keep-unit", "--private-network",
                "-D", str(merged), f"--bind-ro={bundle}:{BUNDLE_PATH}",
                "/bin/bash", "-c", "\n".join(image_build_commands(cloud, sha256)),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )  # fmt: skip
    finally:
        _unmount(merged)
        shutil.rmtree(workdir / "image-work", ignore_errors=True)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join(log.splitlines()[-20:])
        raise RehearsalError(f"the image build script failed ({result.returncode}):\n{tail}")
    return NodeImage(rootfs, layer, time.monotonic() - started, log)


@dataclass
class Instance:
    """One booted node: overlay root, namespace, and the ``systemd-nspawn --boot`` process."""

    name: str
    image: NodeImage
    workdir: Path
    namespace: str
    address: str
    files: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    booted_at: float = 0.0
    _powering_off: bool = False

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    def boot(self) -> Instance:
        _mount_overlay(self.image.lower, self.workdir / "layer", self.workdir / "work", self.root)
        self.files.setdefault("/etc/hostname", self.name + "\n")
        self.files.setdefault("/etc/systemd/system/rehearsal-user-data.service", USER_DATA_UNIT)
        for path, text in self.files.items():
            target = self.root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        wants = self.root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "rehearsal-user-data.service"
        if not link.is_symlink():
            link.symlink_to("/etc/systemd/system/rehearsal-user-data.service")
        self.booted_at = time.monotonic()
        with self.console_log.open("wb") as console:
            self.process = subprocess.Popen(
                [
                    NSPAWN, "--quiet", "--boot", "--register=no", "--keep-unit",
                    "-D", str(self.root), f"--machine={self.name}",
                    f"--network-namespace-path=/run/netns/{self.namespace}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def init_pid(self) -> int:
        """The container's PID 1, seen from here."""
        assert self.process is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RehearsalError(f"{self.name} exited:\n{self.console_tail()}")
            for child in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
                for pid in child.read_text().split():
                    status = Path(f"/proc/{pid}/status").read_text().splitlines()
                    nspid = [line for line in status if line.startswith("NSpid")]
                    if nspid and nspid[0].split()[-1] == "1":
                        return int(pid)
            time.sleep(0.05)
        raise RehearsalError(f"{self.name}: no init process found")

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command inside the instance (its mounts, network, PIDs), as root."""
        return subprocess.run(
            ["nsenter", "-t", str(self.init_pid()), "-m", "-u", "-i", "-n", "-p", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_system(self, timeout: float = 120) -> tuple[str, float]:
        """Waits for systemd to finish booting; its state and seconds since ``boot()``."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running").stdout.strip()
            if state in ("running", "degraded", "maintenance", "stopping"):
                return state, time.monotonic() - self.booted_at
            time.sleep(0.2)
        raise RehearsalError(f"{self.name} still {state!r} after {timeout:.0f} s")

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_bytes().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def journal(self, unit: str, lines: int = 60) -> str:
        result = self.run("journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit)
        return result.stdout

    def power_off(self) -> None:
        """Asks the instance to power off without waiting (SIGTERM makes nspawn ask systemd to
        halt), so that several instances shut down side by side."""
        if self.process is not None and self.process.poll() is None and not self._powering_off:
            self.process.send_signal(signal.SIGTERM)
            self._powering_off = True

    def stop(self, timeout: float = 60) -> None:
        """Powers the instance off and waits for it, then cleans up."""
        if self.process is not None and self.process.poll() is None:
            self.power_off()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        _unmount(self.root)
