"""``rtcfleet rehearse``: build the node image and boot it under systemd before anything ships."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer


def rehearse(
    bundle: Annotated[
        Path | None, typer.Option(help="A bundle from `rtcfleet bundle` (default: build one)")
    ] = None,
    media: Annotated[int, typer.Option(min=0, max=8, help="Media nodes to boot")] = 1,
    gateways: Annotated[int, typer.Option(min=1, max=8, help="Gateways to boot")] = 1,
    deny_secret_seconds: Annotated[
        float, typer.Option(min=0, help="Deny the nodes' secret reads this long after launch")
    ] = 0.0,
    hold: Annotated[
        float, typer.Option(min=0, help="Keep the instances up this many seconds before stopping")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Boot the node image for real: debootstrap (cached), the image build script, systemd-nspawn.

    Needs root, debootstrap, systemd-container and coturn. The root filesystem is cached in
    /var/cache/rtcfleet/rehearsal (RTCFLEET_REHEARSAL_CACHE) and rebuilt when missing.
    """
    from infra.spec import Role
    from rtcfleet.rehearsal.region import RehearsedRegion
    from rtcfleet.rehearsal.rootfs import RehearsalError

    log = (lambda _: None) if as_json else typer.echo
    region = RehearsedRegion(bundle=bundle, log=log)
    try:
        region.build()
        region.start()
        if region.doubles is not None and deny_secret_seconds:
            region.doubles.deny_secret_reads_for(deny_secret_seconds)
        nodes = [region.launch(Role.GATEWAY) for _ in range(gateways)]
        nodes += [region.launch(Role.MEDIA_NODE, public_ip="self") for _ in range(media)]
        for node in nodes:
            region.wait_ready(node, timeout=120 + deny_secret_seconds)
        region_ready = round(region.region_ready(), 1) if media else None
        rows = [
            {
                "name": node.instance.name,
                "role": node.role.value,
                "address": node.address,
                "systemd_done_seconds": round(node.boot_seconds, 1),
                "boot_to_ready_seconds": round(node.ready_seconds, 1),
                "failed_units": node.instance.run(
                    "systemctl", "--failed", "--no-legend", "--plain"
                ).stdout.split(),
            }
            for node in nodes
        ]
        report = {
            **{k: round(v, 1) for k, v in region.timings.items()},
            "nodes": rows,
            "region_ready_after_nodes_seconds": region_ready,
        }
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            for item in rows:
                typer.echo(
                    f"{item['name']:<10} {item['address']:<15} "
                    f"ready {item['boot_to_ready_seconds']} s after boot "
                    f"(systemd done {item['systemd_done_seconds']} s), "
                    f"failed units: {item['failed_units'] or 'none'}"
                )
        if hold:
            time.sleep(hold)
    except RehearsalError as exc:
        typer.echo(f"rehearsal failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        region.stop()


def register(app: typer.Typer) -> None:
    app.command()(rehearse)
