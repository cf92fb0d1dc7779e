"""The one image build script: a clean Debian 12 system becomes an rtcfleet node image.

EC2 Image Builder's component, the Azure image template and ``rtcfleet rehearse`` all run
this same text, delivered inline (base64, so no quoting layer can change it) and started with
the bundle's path, its SHA-256 and the cloud. Provider-free, so the image programs and the
rehearsal import it alike.
"""

from __future__ import annotations

import base64
import shlex

INSTALL_PREFIX = "/opt/rtcfleet"
BUNDLE_PATH = "/tmp/rtcfleet-node.tar.gz"
SCRIPT_PATH = "/tmp/rtcfleet-build-image.sh"
CLOUDS = ("aws", "azure", "none")
# Debian packages every node image carries (the rehearsal's root filesystem includes them too)
IMAGE_PACKAGES = ("python3", "python3-venv", "coturn", "iproute2", "ca-certificates")

IMAGE_BUILD_SCRIPT = f"""\
#!/bin/bash
# rtcfleet node image: the bundle installed, its users, units, coturn and sysctl.
#   build-image.sh --bundle PATH --sha256 HEX --cloud aws|azure|none
set -euo pipefail
bundle="" sha="" cloud=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --sha256) sha="$2"; shift 2 ;;
    --cloud) cloud="$2"; shift 2 ;;
    *) echo "build-image: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$cloud" in
  aws|azure|none) ;;
  *) echo "build-image: --cloud aws|azure|none" >&2; exit 2 ;;
esac
[ -n "$bundle" ] && [ -n "$sha" ] || {{ echo "build-image: --bundle and --sha256" >&2; exit 2; }}
echo "$sha  $bundle" | sha256sum -c -
export DEBIAN_FRONTEND=noninteractive
missing=()
for package in {" ".join(IMAGE_PACKAGES)}; do
  dpkg-query -W -f='${{Status}}' "$package" 2>/dev/null | grep -q "ok installed" \\
    || missing+=("$package")
done
if [ "${{#missing[@]}}" -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${{missing[@]}}"
fi
work="$(mktemp -d /tmp/rtcfleet-node.XXXXXX)"
tar -xzf "$bundle" -C "$work"
"$work"/*/install.sh --prefix {INSTALL_PREFIX}
rm -rf "$work"
# coturn runs only as rtcfleet-turn.service, with the settings first boot writes
systemctl disable coturn.service >/dev/null 2>&1 || true
systemctl mask coturn.service >/dev/null
if [ "$cloud" = aws ]; then
  # Image Builder installs the SSM agent for the build; the recipe keeps it, and it starts at boot.
  if [ -e /lib/systemd/system/amazon-ssm-agent.service ] \\
      || [ -e /etc/systemd/system/amazon-ssm-agent.service ]; then
    systemctl enable amazon-ssm-agent.service
  else
    echo "build-image: no amazon-ssm-agent on this build instance: no Session Manager" >&2
  fi
fi
echo "rtcfleet image built ($cloud)"
"""


def image_build_commands(cloud: str, sha256: str, *, sudo: bool = False) -> list[str]:
    """Shell lines that write the script and run it on the bundle at ``BUNDLE_PATH``."""
    if cloud not in CLOUDS:
        raise ValueError(f"cloud {cloud!r} is not one of {CLOUDS}")
    encoded = base64.b64encode(IMAGE_BUILD_SCRIPT.encode()).decode()
    run = "sudo bash" if sudo else "bash"
    return [
        "set -euo pipefail",
        f"echo {encoded} | base64 -d > {SCRIPT_PATH}",
        f"{run} {SCRIPT_PATH} --bundle {BUNDLE_PATH} --sha256 {shlex.quote(sha256)} "
        f"--cloud {cloud}",
    ]


def script_in(commands: list[str]) -> str:
    """The build script a list of ``image_build_commands`` lines carries."""
    for line in commands:
        if line.startswith("echo ") and f"base64 -d > {SCRIPT_PATH}" in line:
            return base64.b64decode(line.split()[1]).decode()
    raise ValueError("no image build script in these commands")
