"""The README's main job: `rtcfleet local up` brings up two regions a bot can call through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
