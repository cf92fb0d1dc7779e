"""The reach report as a reviewer reads it (rich tables) and as CI keeps it (JSON)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from infra.reach.analysis import FlowResult, ReachReport
from infra.reach.network import Step


def _end(stack: str | None, end: object) -> str:
    return f"{stack}/{end}" if stack else str(end)


def _step(step: Step) -> str:
    return f"{step.kind}: {step.resource} ({step.detail})"


def _result(result: FlowResult, paths: bool) -> Text:
    if result.blocked is not None:
        return Text("BLOCKED at " + _step(result.blocked), style="red")
    if not paths:
        return Text(f"admitted ({len(result.steps)} checks)", style="green")
    return Text("admitted\n" + "\n".join(_step(s) for s in result.steps), style="green")


def flows_table(report: ReachReport, paths: bool = True) -> Table:
    table = Table(title=f"flows of {report.env}", show_lines=paths)
    for column in ("flow", "from", "to", "ports", "why / name resolved", "result"):
        table.add_column(column, overflow="fold")
    for result in report.results:
        flow = result.flow
        table.add_row(
            flow.name,
            _end(result.source_stack, flow.source),
            _end(result.destination_stack, flow.destination),
            flow.ports,
            f"{flow.why}\nDNS: {flow.dns}",
            _result(result, paths),
        )
    return table


def exposures_table(report: ReachReport) -> Table:
    table = Table(title="exposed to the internet, needed by no flow", style="red")
    for column in ("stack", "resource", "role", "ports", "from"):
        table.add_column(column, overflow="fold")
    for exposure in report.exposures:
        table.add_row(
            exposure.stack, exposure.resource, exposure.role, exposure.ports, exposure.source
        )
    return table


def summary(report: ReachReport) -> Text:
    blocked = len(report.blocked())
    verdict = "[red]reach: FAILED[/red]" if not report.passed else "[green]reach: passed[/green]"
    return Text.from_markup(
        f"{verdict} ({len(report.results) - blocked} flows admitted, {blocked} blocked, "
        f"{len(report.exposures)} exposures, {len(report.firewall_problems)} firewall/flow "
        f"mismatches; {len(report.stacks)} stacks planned in {report.plan_seconds:.2f}s, "
        f"analysed in {report.analysis_seconds:.2f}s)"
    )


def report_renderable(report: ReachReport, paths: bool = True) -> Group:
    parts: list[object] = [flows_table(report, paths)]
    if report.exposures:
        parts.append(exposures_table(report))
    for problem in report.firewall_problems:
        parts.append(Text(f"firewall/flows: {problem}", style="red"))
    parts.append(summary(report))
    return Group(*parts)  # type: ignore[arg-type]
