"""`rtcfleet plan`: the offline plan a reviewer and the CI deploy job run before `pulumi up`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

EXIT_PASSED = 0
EXIT_VIOLATIONS = 1
EXIT_BAD_SETTINGS = 2


def plan(
    stack: Annotated[
        str | None, typer.Option("--stack", "-s", help="Stack name, e.g. prod-aws-us-east-1")
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", help="Plan every stack of an environment, then `rtcfleet reach` it"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document")] = False,
    stacks_dir: Annotated[
        Path | None, typer.Option("--stacks-dir", help="Where Pulumi.<stack>.yaml files live")
    ] = None,
) -> None:
    """Run the stack program under Pulumi's mocks, list its resources, check the policy pack.

    Exits 0 when every policy passes, 1 on a policy violation, 2 when the stack's settings
    cannot be planned (the message names the config key). With ``--env``, every stack of the
    environment is planned and checked, then every flow is evaluated across them (exit 1 on
    a violation, a blocked flow or an exposure).
    """
    if (stack is None) == (env is None):
        raise typer.BadParameter("give one of --stack or --env")
    if env is not None:
        _plan_env(env, as_json, stacks_dir)
    assert stack is not None
    import warnings

    from rich.console import Console

    # pulumi_aws warns about its own deprecated resources on import; they are not ours.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws\..*")
    from infra.plan.render import plan_document, plan_table, violations_table
    from infra.plan.runner import PlanError, Planner, StackFiles
    from infra.settings_errors import SettingsError

    console = Console(stderr=as_json)
    if not console.is_terminal:
        # CI logs are not 80 columns wide; keep each resource on one readable row.
        console.width = 220
    source = StackFiles(stacks_dir) if stacks_dir else StackFiles()
    try:
        result = Planner(source).plan(stack)
    except SettingsError as exc:
        if as_json:
            document = {
                "stack": stack,
                "passed": False,
                "settingsErrors": [
                    {"key": key, "message": message} for key, message in exc.problems
                ],
            }
            typer.echo(json.dumps(document, indent=2))
        for key, message in exc.problems:
            console.print(f"[red]bad setting[/red] {key}: {message}", highlight=False)
        console.print("nothing planned", style="red")
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    except PlanError as exc:
        console.print(f"[red]cannot plan[/red] {stack}: {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None

    if as_json:
        typer.echo(json.dumps(plan_document(result), indent=2, default=str))
    else:
        console.print(plan_table(result))
        if result.placeholders:
            console.print(
                "placeholder secrets (secure values are not decrypted offline): "
                + ", ".join(result.placeholders),
                style="yellow",
            )
        if result.violations:
            console.print(violations_table(result))
        verdict = (
            "[green]policy pack: passed[/green]"
            if result.passed
            else "[red]policy pack: FAILED[/red]"
        )
        console.print(f"{verdict} ({len(result.resources)} resources, {result.seconds:.2f}s)")
    raise typer.Exit(EXIT_PASSED if result.passed else EXIT_VIOLATIONS)


def _plan_env(env: str, as_json: bool, stacks_dir: Path | None) -> None:
    """Every stack's policy verdict, then the reach report over all of them."""
    import warnings

    from rich.console import Console

    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws\..*")
    from infra.plan.render import violations_table
    from infra.plan.runner import PlanError, Planner, StackFiles
    from infra.reach import reach
    from infra.reach.render import report_renderable
    from infra.settings_errors import SettingsError

    console = Console(stderr=as_json)
    if not console.is_terminal:
        console.width = 220
    source = StackFiles(stacks_dir) if stacks_dir else StackFiles()
    planner = Planner(source)
    try:
        report = reach(env, source=source, planner=planner)
    except SettingsError as exc:
        for key, message in exc.problems:
            console.print(f"[red]bad setting[/red] {key}: {message}", highlight=False)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    except PlanError as exc:
        console.print(f"[red]cannot plan[/red] {env}: {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    plans = [planner.plan(name) for name in report.stacks]
    passed = report.passed and all(p.passed for p in plans)
    if as_json:
        document = {
            "env": env,
            "passed": passed,
            "stacks": {
                p.stack: {
                    "passed": p.passed,
                    "violations": [
                        {
                            "policy": v.policy,
                            "resource": v.resource,
                            "message": v.message,
                            "mandatory": v.mandatory,
                        }
                        for v in p.violations
                    ],
                }
                for p in plans
            },
            "reach": report.as_dict(),
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        for result in plans:
            verdict = "[green]passed[/green]" if result.passed else "[red]FAILED[/red]"
            console.print(
                f"policy pack {result.stack}: {verdict} ({len(result.resources)} resources)"
            )
            if result.violations:
                console.print(violations_table(result))
        console.print(report_renderable(report, paths=False))
    raise typer.Exit(EXIT_PASSED if passed else EXIT_VIOLATIONS)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
