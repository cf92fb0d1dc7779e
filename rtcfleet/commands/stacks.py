"""`rtcfleet stacks order`: the deploy order CI and operators share, from the stack files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

EXIT_BAD_ORDER = 2

stacks_app = typer.Typer(help="The stacks of a deployment.", no_args_is_help=True)


@stacks_app.command("order")
def order(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document: order, phases, dependencies")
    ] = False,
    stacks_dir: Annotated[
        Path, typer.Option("--stacks-dir", help="Where Pulumi.<stack>.yaml files live")
    ] = Path("stacks"),
    env: Annotated[str | None, typer.Option("--env", help="Only this environment")] = None,
) -> None:
    """Print the stacks in deploy order: images, home regions, replicas, the global stack.

    A stack comes after every stack whose outputs it reads. Exits 2 on a cycle, a region
    stack without its home stack, or a stack that reads one deploying in a later phase.
    """
    from infra.settings_errors import SettingsError
    from infra.stack_order import PHASES, StackOrderError, stacks_order

    try:
        result = stacks_order(stacks_dir, env)
    except (StackOrderError, SettingsError) as exc:
        typer.echo(f"cannot order stacks: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_ORDER) from None
    if as_json:
        typer.echo(json.dumps(result.document(), indent=2))
        return
    for number, phase in enumerate(PHASES):
        for node in result.phase(phase):
            after = f"  (after {', '.join(node.after)})" if node.after else ""
            typer.echo(f"{number} {phase:<8} {node.stack}{after}")


@stacks_app.command("set-images")
def set_images(
    bake_report: Annotated[
        Path, typer.Option("--bake-report", help="JSON of `rtcfleet bake`, with imageIds")
    ],
    cloud: Annotated[
        str | None,
        typer.Option(help="Cloud whose stacks the images are for (default: the report's, or aws)"),
    ] = None,
    stacks_dir: Annotated[
        Path, typer.Option("--stacks-dir", help="Where Pulumi.<stack>.yaml files live")
    ] = Path("stacks"),
) -> None:
    """Move the stacks that pin an image to the freshly baked image of their region."""
    from infra.stack_order import set_image_ids

    try:
        report = json.loads(bake_report.read_text())
        images = report["imageIds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        typer.echo(f"no imageIds in {bake_report}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_ORDER) from None
    for stack in set_image_ids(stacks_dir, cloud or str(report.get("cloud", "aws")), images):
        typer.echo(stack)


def register(app: typer.Typer) -> None:
    app.add_typer(stacks_app, name="stacks")
