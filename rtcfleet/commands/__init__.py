"""Command groups of the `rtcfleet` CLI, one module each."""

from __future__ import annotations

import importlib

import typer

# One line per command module; each defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "services",
    "local",
    "drill",
    "plan",
    "reach",
    "bundle",
    "stacks",
    "rehearse",
)


def register_all(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"rtcfleet.commands.{name}").register(app)
