"""The rtcfleet CrossGuard pack: ``pulumi preview --policy-pack policy``.

The policies live in ``infra.policy`` so ``rtcfleet plan`` evaluates the very same functions
offline; this file only serves them to the Pulumi engine.
"""

import sys
from pathlib import Path

# The pack runs from its own virtualenv; the policies and the spec they enforce are in the repo.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from infra.policy import POLICIES

PolicyPack(
    name="rtcfleet",
    description="Firewall per infra.spec.FIREWALL, no SSH, IMDSv2, encryption, HA minimums",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
