"""One rehearsed region per test session: the image built once, a gateway and a media node booted.

Needs root (namespaces, overlay mounts, systemd-nspawn); ``.ci/run`` installs debootstrap,
systemd-container and coturn.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.spec import Role
from rtcfleet.rehearsal.region import BootedNode, RehearsedRegion


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="the rehearsal boots containers: it needs root")
    for item in items:
        if "tests/rehearsal/" not in str(item.fspath):
            continue
        item.add_marker(pytest.mark.slow)
        # whichever test comes first builds the region: debootstrap (uncached), the bundle and
        # the image take about five minutes on a 2-core machine
        item.add_marker(pytest.mark.timeout(900))
        if os.geteuid() != 0:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def region() -> Iterator[RehearsedRegion]:
    for tool in ("debootstrap", "systemd-nspawn", "turnserver"):
        assert shutil.which(tool), f"{tool} is missing: .ci/run installs it"
    bundle = os.environ.get("RTCFLEET_REHEARSAL_BUNDLE")
    rehearsed = RehearsedRegion(bundle=Path(bundle) if bundle else None, log=print)
    try:
        rehearsed.build()
        rehearsed.start()
        yield rehearsed
    finally:
        rehearsed.stop()


@pytest.fixture(scope="session")
def booted(region: RehearsedRegion) -> dict[Role, BootedNode]:
    """A gateway and a media node booted together, both ready; the media node's public
    address is its own (a 1:1 NAT that maps it to itself)."""
    gateway = region.launch(Role.GATEWAY)
    media = region.launch(Role.MEDIA_NODE, public_ip="self")
    region.wait_ready(gateway)
    region.wait_ready(media)
    region.region_ready()
    print(
        f"\nboot to ready: gateway {gateway.ready_seconds:.1f} s "
        f"(systemd done {gateway.boot_seconds:.1f} s), media {media.ready_seconds:.1f} s "
        f"(systemd done {media.boot_seconds:.1f} s); timings {region.timings}"
    )
    return {Role.GATEWAY: gateway, Role.MEDIA_NODE: media}
