"""The node image, built by the one image build script and booted under real systemd."""

from __future__ import annotations

import re

from infra.spec import Role
from rtcfleet.rehearsal.region import SERVICE_USERS, BootedNode, RehearsedRegion


def test_the_image_build_script_built_the_image_in_a_container(region: RehearsedRegion) -> None:
    image = region.image
    assert image is not None
    assert "rtcfleet image built (none)" in image.build_log
    layer = image.layer
    assert (layer / "opt/rtcfleet/venv/bin/rtcfleet").exists()
    units = {p.name for p in (layer / "etc/systemd/system").glob("rtcfleet-*.service")}
    assert set(SERVICE_USERS) | {"rtcfleet-first-boot.service"} <= units
    assert re.search(
        r"^rtcfleet:x:\d+:\d+::/nonexistent:", (layer / "etc/passwd").read_text(), re.M
    )
    # Debian's own coturn unit would start an unconfigured relay: the image masks it
    assert (layer / "etc/systemd/system/coturn.service").resolve().as_posix() == "/dev/null"
    assert (layer / "etc/sysctl.d/90-rtcfleet.conf").exists()


def _main_user(node: BootedNode, unit: str) -> str:
    pid = node.instance.run("systemctl", "show", "-P", "MainPID", unit).stdout.strip()
    assert pid not in ("", "0"), f"{unit} is not running:\n{node.instance.journal(unit)}"
    return node.instance.run("stat", "-c", "%U", f"/proc/{pid}").stdout.strip()


def test_booted_nodes_reach_multi_user_with_no_failed_unit(booted: dict[Role, BootedNode]) -> None:
    for role, node in booted.items():
        target = node.instance.run("systemctl", "is-active", "multi-user.target")
        assert target.stdout.strip() == "active", role
        failed = node.instance.run("systemctl", "--failed", "--no-legend", "--plain")
        assert failed.returncode == 0 and failed.stdout.strip() == "", failed.stdout
        assert node.instance.run("systemctl", "is-system-running").stdout.strip() == "running"


def test_services_run_as_their_unprivileged_users(booted: dict[Role, BootedNode]) -> None:
    gateway, media = booted[Role.GATEWAY], booted[Role.MEDIA_NODE]
    assert _main_user(gateway, "rtcfleet-gateway.service") == "rtcfleet"
    assert _main_user(media, "rtcfleet-media.service") == "rtcfleet"
    assert _main_user(media, "rtcfleet-turn.service") == "turnserver"
    # coturn read its own configuration: authentication on, private peers denied
    turn_log = media.instance.journal("rtcfleet-turn.service", lines=400)
    assert "Cannot find config file" not in turn_log
    assert "Black listing: 10.0.0.0-10.255.255.255" in turn_log
    settings = media.instance.run("stat", "-c", "%U:%G %a", "/etc/rtcfleet/turnserver.conf")
    assert settings.stdout.strip() == "root:root 600", "the TURN secret stays root's"


def test_first_boot_survives_a_secret_permission_that_arrives_20_s_late(
    region: RehearsedRegion, booted: dict[Role, BootedNode]
) -> None:
    assert region.doubles is not None
    region.doubles.deny_secret_reads_for(20)
    denied_before = region.doubles.denied_reads
    node = region.launch(Role.GATEWAY)
    try:
        region.wait_ready(node, timeout=150)
        assert region.doubles.denied_reads > denied_before
        log = node.instance.journal("rtcfleet-first-boot.service", lines=200)
        assert "AccessDeniedException" in log and "retrying in" in log
        assert node.ready_seconds >= 20
        failed = node.instance.run("systemctl", "--failed", "--no-legend", "--plain").stdout
        assert failed.strip() == ""
        print(f"\nready {node.ready_seconds:.1f} s after boot with the secret denied for 20 s")
    finally:
        region.retire(node)
