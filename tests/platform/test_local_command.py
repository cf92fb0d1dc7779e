"""The README's main job: `rtcfleet local up` brings up two regions a bot can call through."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def rtcfleet(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtcfleet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_local_up_detached_status_bot_and_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTCFLEET_")}
    env["RTCFLEET_STATE_DIR"] = str(tmp_path)
    up = rtcfleet(
        "local", "up", "--detach", "--regions", "2", "--gateways", "1", "--media", "1",
        env=env, timeout=240,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "local-1" in up.stdout and "local-2" in up.stdout
        status = json.loads(rtcfleet("local", "status", "--json", env=env, timeout=30).stdout)
        assert [r["region"] for r in status["regions"]] == ["local-1", "local-2"]
        url = status["regions"][1]["signal_urls"][0]
        assert url in up.stdout, "the printed URL is the one to use"

        partner = subprocess.Popen(
            [sys.executable, "-m", "rtcfleet", "bot", "--room", "demo", "--gateway", url,
             "--identity", "partner", "--seconds", "8", "--json"],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        bot = rtcfleet(
            "bot", "--room", "demo", "--gateway", url, "--token", status["join_token"],
            "--seconds", "6", "--json", env=env, timeout=60,
        )  # fmt: skip
        partner.wait(60)
        assert bot.returncode == 0, bot.stderr
        report = json.loads(bot.stdout)
        video = [t for t in report["tracks"] if t["kind"] == "video"]
        assert video and video[0]["publisher"] == "partner"
        assert video[0]["frames_decoded"] > 60
        assert (video[0]["width"], video[0]["height"]) == (640, 360)
    finally:
        down = rtcfleet("local", "down", env=env, timeout=90)
        assert down.returncode == 0, down.stdout + down.stderr
    assert rtcfleet("local", "status", env=env, timeout=30).returncode == 1


CHECKOUT = Path(__file__).resolve().parents[2]


class Lines:
    """A child's stdout read line by line in a thread, so waits on it have deadlines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in:\n{''.join(self.seen)}") from None
            if line is None:
                raise AssertionError(f"output ended before {pattern!r}:\n{''.join(self.seen)}")
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found


@pytest.mark.slow
def test_readme_local_up_runs_until_ctrl_c_and_carries_a_call(tmp_path: Path) -> None:
    """``./scripts/rtcfleet local up`` exactly as the README has it, then the README's bot
    joins through the URL it printed, with the join token it printed; Ctrl-C stops it all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTCFLEET_")}
    env["RTCFLEET_STATE_DIR"] = str(tmp_path)
    fleet = subprocess.Popen(
        ["./scripts/rtcfleet", "local", "up"],
        cwd=CHECKOUT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )  # fmt: skip
    try:
        output = Lines(fleet)
        token = output.until(r"join token for room 'demo': (\S+)", 240)[1]
        url = output.until(r"try it: rtcfleet bot --room demo --gateway (\S+)", 10)[1]
        output.until(r"running; Ctrl-C stops the fleet", 10)
        status = json.loads(rtcfleet("local", "status", "--json", env=env, timeout=30).stdout)
        assert [len(r["media_nodes"]) for r in status["regions"]] == [2, 2], status

        # the README's second participant, then a guest with the printed join token
        partner = subprocess.Popen(
            ["./scripts/rtcfleet", "bot", "--room", "demo", "--gateway", url, "--seconds", "10"],
            cwd=CHECKOUT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        guest = subprocess.run(
            ["./scripts/rtcfleet", "bot", "--room", "demo", "--gateway", url, "--token", token,
             "--seconds", "6", "--json"],
            cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        partner_out, partner_err = partner.communicate(timeout=90)
        assert partner.returncode == 0, partner_err
        assert guest.returncode == 0, guest.stderr
        report = json.loads(guest.stdout)
        assert report["name"] == "bot" and report["errors"] == []
        video = [t for t in report["tracks"] if t["kind"] == "video"]
        print(f"guest decoded {video}")
        assert len(video) == 1 and video[0]["publisher"].startswith("bot-"), video
        assert video[0]["frames_decoded"] > 60
        assert (video[0]["width"], video[0]["height"]) == (640, 360)
        seen = re.search(r"guest/video: (\d+) frames decoded", partner_out)
        assert seen and int(seen[1]) > 60, partner_out
    finally:
        if fleet.poll() is None:
            os.killpg(fleet.pid, signal.SIGINT)  # Ctrl-C
        try:
            code = fleet.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(fleet.pid, signal.SIGKILL)
            raise AssertionError("local up did not stop on Ctrl-C") from None
    assert code == 0, "".join(output.seen)
    assert rtcfleet("local", "status", env=env, timeout=30).returncode == 1
