"""`rtcfleet reach`: every flow the platform needs, proven to pass before deploy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

EXIT_PASSED = 0
EXIT_BLOCKED = 1
EXIT_BAD_SETTINGS = 2


def reach(
    env: Annotated[str, typer.Option("--env", "-e", help="Environment, e.g. prod")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
    paths: Annotated[
        bool, typer.Option("--paths/--no-paths", help="Print each admitted flow's path")
    ] = True,
    stacks_dir: Annotated[
        Path | None, typer.Option("--stacks-dir", help="Where Pulumi.<stack>.yaml files live")
    ] = None,
) -> None:
    """Plan every stack of ENV offline and evaluate each flow of infra/flows.py hop by hop.

    Exits 0 when every flow is admitted and the internet reaches nothing no flow needs, 1 on
    a blocked flow, an exposure or a firewall rule no flow needs, 2 when a stack cannot be
    planned.
    """
    import warnings

    from rich.console import Console

    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws\..*")
    from infra.plan.runner import PlanError, StackFiles
    from infra.reach import reach as run_reach
    from infra.reach.render import report_renderable
    from infra.settings_errors import SettingsError

    console = Console(stderr=as_json)
    if not console.is_terminal:
        console.width = 220
    source = StackFiles(stacks_dir) if stacks_dir else StackFiles()
    try:
        report = run_reach(env, source=source)
    except SettingsError as exc:
        for key, message in exc.problems:
            console.print(f"[red]bad setting[/red] {key}: {message}", highlight=False)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    except PlanError as exc:
        console.print(f"[red]cannot plan[/red] {env}: {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        console.print(report_renderable(report, paths))
    raise typer.Exit(EXIT_PASSED if report.passed else EXIT_BLOCKED)


def register(app: typer.Typer) -> None:
    app.command("reach")(reach)
