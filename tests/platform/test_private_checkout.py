"""A checkout in a folder only root may enter, run as root: what a newcomer in a container
does first. Postgres runs as an unprivileged user, who cannot reach binaries inside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another user"),
]


@pytest.fixture(scope="module")
def private_checkout() -> Iterator[Path]:
    """The checkout's files (as they are now, committed or not) in a fresh ``mktemp -d``."""
    private = Path(tempfile.mkdtemp(prefix="rtcfleet-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    checkout = private / "rtcfleet"
    for name in filter(None, listed.split("\0")):
        source = CHECKOUT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name)
    yield checkout
    shutil.rmtree(private, ignore_errors=True)


def run(checkout: Path, *argv: str, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RTCFLEET_", "PYTEST_"))}
    return subprocess.run(
        list(argv), cwd=checkout, env=clean | env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def test_local_up_status_bot_and_down(private_checkout: Path) -> None:
    state = {"RTCFLEET_STATE_DIR": str(private_checkout.parent / "state")}
    up = run(
        private_checkout, "./scripts/rtcfleet", "local", "up", "--detach",
        "--regions", "2", "--gateways", "1", "--media", "1", timeout=600, **state,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr + _log(private_checkout)
        status = run(private_checkout, "./scripts/rtcfleet", "local", "status", "--json",
                     timeout=60, **state)  # fmt: skip
        assert status.returncode == 0, status.stderr
        fleet = json.loads(status.stdout)
        url = fleet["regions"][0]["signal_urls"][0]
        partner = subprocess.Popen(
            ["./scripts/rtcfleet", "bot", "--room", "demo", "--gateway", url, "--seconds", "8"],
            cwd=private_checkout, env=os.environ | state, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        bot = run(
            private_checkout, "./scripts/rtcfleet", "bot", "--room", "demo", "--gateway", url,
            "--token", fleet["join_token"], "--seconds", "5", "--json", timeout=90, **state,
        )  # fmt: skip
        assert partner.wait(90) == 0
        assert bot.returncode == 0, bot.stderr
        video = [t for t in json.loads(bot.stdout)["tracks"] if t["kind"] == "video"]
        assert len(video) == 1 and video[0]["frames_decoded"] > 30, video
    finally:
        down = run(private_checkout, "./scripts/rtcfleet", "local", "down", timeout=120, **state)
        assert down.returncode == 0, down.stdout + down.stderr


def test_server_tests_pass(private_checkout: Path) -> None:
    result = run(
        private_checkout, "./scripts/test", "tests/servers", "-q", "-p", "no:cacheprovider",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(result.stdout.strip().splitlines()[-1])


def _log(checkout: Path) -> str:
    log = checkout.parent / "state" / "local.log"
    return log.read_text()[-3000:] if log.exists() else ""
