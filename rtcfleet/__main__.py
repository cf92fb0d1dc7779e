"""``python -m rtcfleet``: the CLI, for process launchers that do not rely on PATH."""

from rtcfleet.cli import app

app()
