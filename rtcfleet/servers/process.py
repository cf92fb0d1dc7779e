"""A server child process that the caller owns: started, waited for, stopped or killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path


class ServerProcess:
    """One server binary running as a child, its output kept in a log file for post-mortems."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        netns: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        if netns is not None:
            # ip netns exec and setpriv both exec in place: the pid is still the server's
            if user is not None:
                self.argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                             "--", *self.argv]  # fmt: skip
                user = None
            self.argv = ["ip", "netns", "exec", netns, *self.argv]
        self.log_path = log_path
        self.user = user
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps writing after we return
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self.user,
                env=self.env,
                # own process group: a Ctrl-C meant for the fleet is handled by the fleet
                start_new_session=True,
            )
        finally:
            log.close()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self) -> None:
        """Raise with the tail of the log when the server died during start-up."""
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self._proc.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL of the whole process group: a machine dying, the fault drills inject."""
        if self.running():
            assert self._proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def send_signal(self, sig: int) -> None:
        if self.running():
            assert self._proc is not None
            self._proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit status, raising ``subprocess.TimeoutExpired`` if still running."""
        assert self._proc is not None
        return self._proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if not self.running():
            return
        assert self._proc is not None
        self._proc.send_signal(sig)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
