"""What every cloud's region program does alike: read the stacks a region depends on, and
write the settings documents its nodes boot with.

A region that does not hold the environment's database writer replicates the home region's
(or, in another cloud than the writer, subscribes to the writer stack's); a region without
``rtcfleet:imageId`` boots the image stack's image. Both are read through stack references
named here, by the output names of ``infra.outputs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pulumi

from infra import outputs, spec
from infra.peers import PEER_REGIONS, PEER_SIGNAL_URLS, PUBLIC_URL, peer_region
from infra.recordings import RECORDING_DOCUMENT
from infra.references import stack_outputs
from infra.settings import RegionSettings
from infra.spec import Role, settings_subscription
from infra.traces import trace_document


def database_source(settings: RegionSettings) -> pulumi.StackReference | None:
    """The stack whose database this region replicates or subscribes to; none at home."""
    stack = settings.database_source_stack
    return None if stack is None else stack_outputs(stack)


def node_image(
    settings: RegionSettings, read: Callable[[pulumi.StackReference], pulumi.Output[str]]
) -> pulumi.Input[str]:
    """The image the region's nodes boot: its own ``imageId``, or ``read`` from the image stack."""
    if settings.image_id is not None:
        return settings.image_id
    return read(stack_outputs(settings.image_stack_name))


def shared_secrets(source: pulumi.StackReference | None) -> dict[str, pulumi.Output[str]]:
    """Secrets every region of the environment holds alike, read from the writer's stack (the
    database source); none where the writer is, which generates them."""
    if source is None:
        return {}
    return {outputs.CLUSTER_SECRET: source.require_output(outputs.CLUSTER_SECRET).apply(str)}


def _listed(url: Any) -> list[str]:
    return [str(url)] if url else []


def peer_gateways(
    settings: RegionSettings, source: pulumi.StackReference | None = None
) -> dict[str, Any]:
    """The gateway document's ``peerRegions`` and ``peerSignalUrls`` (``infra.peers``), read
    from the peer stacks' outputs; ``source``: the database source's reference, which a peer
    that is also the database source shares (one reference per stack in a program)."""
    if not settings.peer_stacks:
        return {}
    references: dict[str, pulumi.StackReference] = {}
    if source is not None and settings.database_source_stack is not None:
        references[settings.database_source_stack] = source
    lookups: dict[str, pulumi.Output[list[str]]] = {}
    signals: dict[str, pulumi.Output[list[str]]] = {}
    for stack in settings.peer_stacks:
        reference = references.get(stack) or stack_outputs(stack)
        region = peer_region(stack)
        # a peer that has not deployed yet has no outputs: no URL, asked again after its up
        lookups[region] = reference.get_output(outputs.ROOM_LOOKUP_URL).apply(_listed)
        signals[region] = reference.get_output(outputs.SIGNALING_URL).apply(_listed)
    return {PEER_REGIONS: lookups, PEER_SIGNAL_URLS: signals}


def region_tags(settings: RegionSettings) -> dict[str, str]:
    """The tags every resource of a region stack carries."""
    return {
        "rtcfleet:env": settings.env,
        "rtcfleet:region": settings.region,
        "rtcfleet:stack": settings.stack,
    }


def node_documents(
    settings: RegionSettings,
    *,
    redis: Mapping[str, Any],
    postgres: Mapping[str, Any],
    write_host: pulumi.Input[str],
    signaling_url: pulumi.Input[str],
    recording: Mapping[str, Any] | None = None,
    peers: Mapping[str, Any] | None = None,
) -> dict[Role, dict[str, Any]]:
    """Each node role's non-secret settings document (gateway and media node, either cloud);
    ``peers``: the other regions' gateways (``peer_gateways``)."""
    gateway_postgres = {**postgres, "writeHost": write_host}
    if settings.subscribes:
        # the subscription the gateways keep following the writer
        gateway_postgres["subscription"] = settings_subscription(settings.region)
    # both roles export spans to the same receiver (infra/traces.py)
    traces = trace_document(settings.otlp_endpoint, settings.trace_sample_ratio)
    return {
        Role.GATEWAY: {
            "env": settings.env,
            "region": settings.region,
            "homeRegion": settings.home_region,
            "redis": redis,
            "postgres": gateway_postgres,
            "signalingPort": spec.CLIENT_SIGNALING_PORT,
            "adminPort": spec.ADMIN_PORT,
            # sessions get STUN/TURN on their media node's coturn at this port
            "turnPort": spec.TURN_PORT,
            **({PUBLIC_URL: settings.signaling_url} if settings.signaling_url else {}),
            **(peers or {}),
            **traces,
        },
        Role.MEDIA_NODE: {
            "env": settings.env,
            "region": settings.region,
            "redis": redis,
            "postgres": postgres,
            "signalingUrl": signaling_url,
            "mediaPorts": [spec.MEDIA_PORT_MIN, spec.MEDIA_PORT_MAX],
            "turnPort": spec.TURN_PORT,
            "drainTimeoutSeconds": settings.drain_timeout_seconds,
            # the region's recording store (infra/recordings.py)
            **({RECORDING_DOCUMENT: recording} if recording is not None else {}),
            **traces,
        },
    }
