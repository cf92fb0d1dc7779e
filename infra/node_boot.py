"""The boot script every node image runs: who the node is and where its settings live.

It carries names and addresses only, never a secret value; each cloud's node groups fill in
the variables their nodes need to find their settings and secrets with their own identity.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from infra.spec import Role

ENV_FILE = "/etc/rtcfleet/node.env"


def boot_script(role: Role, variables: Mapping[str, str]) -> str:
    """The script, base64-encoded as both EC2 user data and Azure custom data expect it."""
    script = "\n".join(
        [
            "#!/bin/bash",
            "set -euo pipefail",
            "install -d -m 0755 /etc/rtcfleet",
            f"cat > {ENV_FILE} <<'EOF'",
            *(f"{key}={value}" for key, value in variables.items()),
            "EOF",
            f"chmod 0644 {ENV_FILE}",
            # no daemon-reload in the middle of boot (units that read the boot state, such as
            # systemd-update-utmp-runlevel, fail when it lands under them), and no waiting here
            # for first boot's retries
            f"systemctl --no-reload enable rtcfleet-{role.value}.service",
            f"systemctl start --no-block rtcfleet-{role.value}.service",
            "",
        ]
    )
    return base64.b64encode(script.encode()).decode()
