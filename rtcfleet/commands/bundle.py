"""``rtcfleet bundle`` builds the node bundle; ``rtcfleet bake aws|azure`` bakes it into images."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

bake_app = typer.Typer(help="Bake the node bundle into machine images.", no_args_is_help=True)


def bundle(
    out: Annotated[Path, typer.Option(help="Folder the bundle is written to")] = Path("dist"),
    source: Annotated[
        Path | None, typer.Option(help="Checkout to build from (default: this one)")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Bundle version (default: rtcfleet's)")
    ] = None,
    python_version: Annotated[
        str, typer.Option(help="Python of the image the wheels are for")
    ] = "3.11",
    platform: Annotated[
        list[str] | None, typer.Option(help="pip --platform tags of the image (default: this one)")
    ] = None,
) -> None:
    """Build the versioned node bundle: wheels, systemd units, sysctl, coturn, first boot."""
    from rtcfleet.bundle.builder import BundleError, BundleSpec, build_bundle

    spec = BundleSpec(
        source=source or BundleSpec.default_source(),
        out_dir=out,
        version=version,
        python_version=python_version,
        platforms=tuple(platform or ()),
    )
    try:
        built = build_bundle(spec)
    except BundleError as exc:
        typer.echo(f"bundle failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{built.archive}  ({built.size_bytes / 1e6:.1f} MB, sha256 {built.sha256})")
    typer.echo(f"  {len(built.wheels)} wheels, units: {', '.join(built.units)}")


@bake_app.command("aws")
def bake_aws(
    bundle: Annotated[Path, typer.Option(help="Bundle archive from `rtcfleet bundle`")],
    bucket: Annotated[str, typer.Option(help="S3 bucket the builder fetches the bundle from")],
    home_region: Annotated[str, typer.Option(help="Region the image is built in")],
    region: Annotated[
        list[str] | None, typer.Option(help="Every other region of the deployment (repeat)")
    ] = None,
    version: Annotated[str | None, typer.Option(help="Image version (default: bundle's)")] = None,
    base_image: Annotated[
        str, typer.Option(help="AMI id or ssm:<parameter> of the Debian/Ubuntu base")
    ] = "ssm:/aws/service/debian/release/12/latest/amd64",
    name: Annotated[str, typer.Option(help="Image name, shared by every version")] = (
        "rtcfleet-node"
    ),
    instance_type: Annotated[str, typer.Option(help="Builder instance type")] = "c6i.large",
    subnet: Annotated[str | None, typer.Option(help="Builder subnet id")] = None,
    security_group: Annotated[
        list[str] | None, typer.Option(help="Builder security group id (repeat)")
    ] = None,
    instance_profile: Annotated[
        str | None, typer.Option(help="Builder instance profile (may tag itself)")
    ] = None,
    keep: Annotated[int, typer.Option(help="Images of this name kept per region")] = 3,
    health_timeout: Annotated[float, typer.Option(help="Seconds to wait for the builder")] = 1200,
    poll_seconds: Annotated[float, typer.Option(help="Seconds between builder polls")] = 10.0,
    endpoint_url: Annotated[
        str | None, typer.Option(envvar="RTCFLEET_AWS_ENDPOINT_URL", help="AWS API endpoint")
    ] = None,
) -> None:
    """Bake AMIs without Image Builder: build, health check, image, copies, tags, pruning."""
    from rtcfleet.bake.aws import AwsBaker, AwsBakeSpec, BakeFailed, boto3_clients
    from rtcfleet.bundle.builder import bundle_version

    logging.basicConfig(level=os.environ.get("RTCFLEET_LOG_LEVEL", "INFO"))
    if not bundle.is_file():
        typer.echo(f"no bundle at {bundle}", err=True)
        raise typer.Exit(2)
    spec = AwsBakeSpec(
        bundle=bundle,
        version=version or bundle_version(bundle),
        bucket=bucket,
        home_region=home_region,
        regions=[home_region, *(region or [])],
        base_image=base_image,
        name=name,
        instance_type=instance_type,
        subnet_id=subnet,
        security_group_ids=tuple(security_group or ()),
        instance_profile=instance_profile,
        keep=keep,
        health_timeout_seconds=health_timeout,
        poll_seconds=poll_seconds,
    )
    try:
        result = AwsBaker(spec, boto3_clients(endpoint_url)).bake()
    except (BakeFailed, ValueError) as exc:
        typer.echo(f"bake failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result.as_dict(), indent=2))


@bake_app.command("azure")
def bake_azure(
    bundle: Annotated[Path, typer.Option(help="Bundle archive from `rtcfleet bundle`")],
    bundle_url: Annotated[
        str, typer.Option(help="https URL of the bundle's blob (the builder identity reads it)")
    ],
    subscription: Annotated[str, typer.Option(envvar="AZURE_SUBSCRIPTION_ID", help="Subscription")],
    resource_group: Annotated[str, typer.Option(help="Resource group of the Compute Gallery")],
    gallery: Annotated[str, typer.Option(help="Compute Gallery name")],
    location: Annotated[str, typer.Option(help="Location the image is built in")],
    identity: Annotated[str, typer.Option(help="Resource id of Image Builder's identity")],
    staging_group: Annotated[str, typer.Option(help="Resource id of the empty staging group")],
    region: Annotated[
        list[str] | None, typer.Option(help="Every other location of the environment (repeat)")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Gallery version x.y.z (default: bundle's)")
    ] = None,
    image_definition: Annotated[str, typer.Option(help="Gallery image definition")] = (
        "rtcfleet-node"
    ),
    vm_size: Annotated[str, typer.Option(help="Build VM size")] = "Standard_D2s_v5",
    keep: Annotated[int, typer.Option(help="Versions of the definition kept")] = 3,
) -> None:
    """Bake a Compute Gallery version with Image Builder: build, check, replicate, tag, prune."""
    from rtcfleet.bake.azure import AzureBakeClients, AzureBakeFailed, AzureBaker, AzureBakeSpec
    from rtcfleet.bundle.builder import bundle_version

    logging.basicConfig(level=os.environ.get("RTCFLEET_LOG_LEVEL", "INFO"))
    if not bundle.is_file():
        typer.echo(f"no bundle at {bundle}", err=True)
        raise typer.Exit(2)
    spec = AzureBakeSpec(
        bundle=bundle,
        bundle_url=bundle_url,
        version=version or bundle_version(bundle),
        subscription_id=subscription,
        resource_group=resource_group,
        gallery=gallery,
        location=location,
        locations=[location, *(region or [])],
        identity_id=identity,
        staging_group_id=staging_group,
        image_definition=image_definition,
        vm_size=vm_size,
        keep=keep,
    )
    try:
        result = AzureBaker(spec, AzureBakeClients.create(subscription)).bake()
    except (AzureBakeFailed, ValueError) as exc:
        typer.echo(f"bake failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result.as_dict(), indent=2))


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle)
    app.add_typer(bake_app, name="bake")
