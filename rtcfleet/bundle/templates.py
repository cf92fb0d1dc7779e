"""Files the node bundle carries, as templates.

Units and scripts hold ``@PREFIX@`` (install root) and ``@ETC@`` (settings folder), which
``install.sh`` replaces, so one bundle installs under ``/opt/rtcfleet`` on an image and under
a temporary folder in the smoke test. ``TURNSERVER_CONF`` is filled by first boot.
"""

from __future__ import annotations

from string import Template

from infra.spec import DEFAULT_DRAIN_TIMEOUT_SECONDS, MEDIA_PORT_MAX, MEDIA_PORT_MIN

# Media nodes drain before they stop: systemd waits for the drain bound plus a margin.
MEDIA_STOP_TIMEOUT_SECONDS = DEFAULT_DRAIN_TIMEOUT_SECONDS + 60

FIRST_BOOT_UNIT = """\
[Unit]
Description=rtcfleet first boot: role, region and settings from the instance
Wants=network-online.target
After=network-online.target
Before=rtcfleet-gateway.service rtcfleet-media.service rtcfleet-turn.service

[Service]
Type=oneshot
RemainAfterExit=yes
# it waits (with backoff) for secrets whose read permission may still be on its way
ExecStart=@PREFIX@/bin/rtcfleet-first-boot --etc-dir @ETC@ --retry-seconds 600
TimeoutStartSec=660

[Install]
WantedBy=multi-user.target
"""

_SERVICE_HARDENING = """\
User=rtcfleet
Group=rtcfleet
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
LimitNOFILE=1048576
Restart=on-failure
RestartSec=2
"""

GATEWAY_UNIT = f"""\
[Unit]
Description=rtcfleet signaling gateway
Requires=rtcfleet-first-boot.service
After=rtcfleet-first-boot.service network-online.target

[Service]
Type=exec
EnvironmentFile=@ETC@/gateway.env
ExecStart=@PREFIX@/venv/bin/rtcfleet gateway
TimeoutStopSec=30
{_SERVICE_HARDENING}
[Install]
WantedBy=multi-user.target
"""

MEDIA_UNIT = f"""\
[Unit]
Description=rtcfleet media node (SFU); SIGTERM drains it
Requires=rtcfleet-first-boot.service
After=rtcfleet-first-boot.service network-online.target
Wants=rtcfleet-turn.service

[Service]
Type=exec
EnvironmentFile=@ETC@/media.env
ExecStart=@PREFIX@/venv/bin/rtcfleet media-node
KillMode=mixed
TimeoutStopSec={MEDIA_STOP_TIMEOUT_SECONDS}
{_SERVICE_HARDENING}
[Install]
WantedBy=multi-user.target
"""

# coturn runs as its own user, and its configuration (which holds the TURN secret) stays
# root-only: systemd hands it over as a credential. coturn carries on with its defaults (no
# authentication, no denied peers: an open relay) when it cannot read its file, so the unit
# refuses to start it unless the service user can read it.
TURN_UNIT = """\
[Unit]
Description=TURN relay (coturn) with rtcfleet's time-limited credentials
Requires=rtcfleet-first-boot.service
After=rtcfleet-first-boot.service network-online.target
ConditionPathExists=@ETC@/turnserver.conf

[Service]
Type=simple
LoadCredential=turnserver.conf:@ETC@/turnserver.conf
ExecStartPre=/bin/grep -q ^use-auth-secret$ %d/turnserver.conf
ExecStart=@TURNSERVER@ -c %d/turnserver.conf --no-cli
User=turnserver
Group=turnserver
RuntimeDirectory=turnserver
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""

UNITS = {
    "rtcfleet-first-boot.service": FIRST_BOOT_UNIT,
    "rtcfleet-gateway.service": GATEWAY_UNIT,
    "rtcfleet-media.service": MEDIA_UNIT,
    "rtcfleet-turn.service": TURN_UNIT,
}

SYSCTL = f"""\
# rtcfleet node: media binds inside the firewall's UDP range, and bursts of RTP fit the buffers.
net.ipv4.ip_local_port_range = {MEDIA_PORT_MIN} {MEDIA_PORT_MAX}
net.core.rmem_max = 26214400
net.core.wmem_max = 26214400
net.core.rmem_default = 4194304
net.core.wmem_default = 4194304
net.core.netdev_max_backlog = 10000
net.ipv4.udp_rmem_min = 16384
net.ipv4.udp_wmem_min = 16384
"""

TURNSERVER_CONF = Template("""\
# Written by rtcfleet first boot. Credentials are coturn's REST-API scheme: the gateway signs
# "expiry:identity" with the shared secret, so they expire and need no user database.
listening-port=$listening_port
listening-ip=$listening_ip
relay-ip=$listening_ip
$external_ip_line
min-port=$min_port
max-port=$max_port
realm=$realm
use-auth-secret
static-auth-secret=$secret
fingerprint
no-tls
no-dtls
no-tcp-relay
no-multicast-peers
no-cli
pidfile=/run/turnserver/turnserver.pid
denied-peer-ip=0.0.0.0-0.255.255.255
denied-peer-ip=10.0.0.0-10.255.255.255
denied-peer-ip=100.64.0.0-100.127.255.255
denied-peer-ip=127.0.0.0-127.255.255.255
denied-peer-ip=169.254.0.0-169.254.255.255
denied-peer-ip=172.16.0.0-172.31.255.255
denied-peer-ip=192.0.0.0-192.0.0.255
denied-peer-ip=192.168.0.0-192.168.255.255
denied-peer-ip=198.18.0.0-198.19.255.255
denied-peer-ip=240.0.0.0-255.255.255.255
denied-peer-ip=::1
denied-peer-ip=64:ff9b::-64:ff9b::ffff:ffff
denied-peer-ip=::ffff:0.0.0.0-::ffff:255.255.255.255
denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff
# the one private peer: this node's own SFU, which clients reach through the relay
allowed-peer-ip=$listening_ip
total-quota=1200
stale-nonce=600
log-file=stdout
simple-log
""")

FIRST_BOOT_SCRIPT = """\
#!/bin/sh
# Learns role, region and settings from the instance; writes @ETC@/<role>.env.
exec @PREFIX@/venv/bin/python -m rtcfleet.bundle.first_boot "$@"
"""

HEALTH_CHECK_SCRIPT = """\
#!/bin/sh
# The bake's gate: the installed services import, parse their settings models and run.
set -eu
@PREFIX@/venv/bin/rtcfleet version
@PREFIX@/venv/bin/python -c \\
  'import gateway_node.app, media_node.supervisor, rtcfleet.bundle.first_boot'
@PREFIX@/venv/bin/rtcfleet media-node --help >/dev/null
@PREFIX@/venv/bin/rtcfleet gateway --help >/dev/null
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify @UNIT_DIR@/rtcfleet-gateway.service @UNIT_DIR@/rtcfleet-media.service \\
    @UNIT_DIR@/rtcfleet-first-boot.service
fi
echo "rtcfleet bundle healthy"
"""

INSTALL_SCRIPT = """\
#!/bin/bash
# Installs this bundle: a venv from the bundled wheels (no index), units, sysctl, scripts.
#   install.sh [--prefix /opt/rtcfleet] [--etc-dir /etc/rtcfleet] [--unit-dir DIR]
#              [--sysctl-dir DIR] [--python python3] [--no-system]
# --no-system installs files only: no user, no systemctl, no sysctl reload. Debian packages
# (python3-venv, coturn) are the image build script's job.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix=/opt/rtcfleet etc=/etc/rtcfleet unit_dir=/etc/systemd/system
sysctl_dir=/etc/sysctl.d python=python3 system=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --etc-dir) etc="$2"; shift 2 ;;
    --unit-dir) unit_dir="$2"; shift 2 ;;
    --sysctl-dir) sysctl_dir="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --no-system) system=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
install -d -m 0755 "$prefix" "$prefix/bin" "$unit_dir" "$sysctl_dir"
install -d -m 0750 "$etc"
"$python" -m venv "$prefix/venv"
"$prefix/venv/bin/python" -m pip install --quiet --no-index --disable-pip-version-check \\
  --find-links "$here/wheels" --require-hashes -r "$here/requirements.txt"
"$prefix/venv/bin/python" -m pip install --quiet --no-index --disable-pip-version-check \\
  --no-deps "$here"/wheels/rtcfleet-*.whl
turnserver="$(command -v turnserver || echo /usr/bin/turnserver)"
render() {
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@ETC@|$etc|g" -e "s|@UNIT_DIR@|$unit_dir|g" \\
      -e "s|@TURNSERVER@|$turnserver|g" "$1" > "$2"
}
for unit in "$here"/systemd/*.service; do
  render "$unit" "$unit_dir/$(basename "$unit")"
  chmod 0644 "$unit_dir/$(basename "$unit")"
done
for script in "$here"/bin/*; do
  render "$script" "$prefix/bin/$(basename "$script")"
  chmod 0755 "$prefix/bin/$(basename "$script")"
done
install -m 0644 "$here/sysctl/90-rtcfleet.conf" "$sysctl_dir/90-rtcfleet.conf"
install -m 0644 "$here/manifest.json" "$prefix/manifest.json"
if [ "$system" = 1 ]; then
  id rtcfleet >/dev/null 2>&1 \\
    || useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin \\
         rtcfleet
  chgrp rtcfleet "$etc"
  systemctl enable rtcfleet-first-boot.service
  if [ -d /run/systemd/system ]; then
    # a running system (not an image being built in a container) takes the settings now
    sysctl --system >/dev/null
    systemctl daemon-reload
  fi
fi
echo "rtcfleet $(cat "$here/VERSION") installed in $prefix"
"""
