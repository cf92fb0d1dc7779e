"""The platform's secret values: from Pulumi secret config, another stack, or generated.

Cloud-neutral: each cloud's secrets block stores these values in its own secret store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pulumi
import pulumi_random as random

from infra.settings_errors import NAMESPACE
from infra.spec import SECRET_NAMES

# Managed Redis and Postgres refuse some punctuation in passwords; length carries the entropy.
SECRET_LENGTH = 48


def configured_secrets() -> dict[str, pulumi.Output[str]]:
    """Secrets the operator set with ``pulumi config set --secret rtcfleet:<name>``."""
    config = pulumi.Config(NAMESPACE)
    return {name: value for name in SECRET_NAMES if (value := config.get_secret(name)) is not None}


def secret_values(
    prefix: str,
    provided: Mapping[str, pulumi.Input[str]],
    parent: pulumi.Resource,
    names: Iterable[str] = SECRET_NAMES,
) -> dict[str, pulumi.Output[str]]:
    """Every named secret as a Pulumi secret: the provided value, or a generated password."""
    unknown = set(provided) - set(SECRET_NAMES)
    if unknown:
        raise ValueError(f"unknown secrets {sorted(unknown)}")
    values: dict[str, pulumi.Output[str]] = {}
    for secret in names:
        if secret in provided:
            values[secret] = pulumi.Output.secret(provided[secret])
        else:
            generated = random.RandomPassword(
                f"{prefix}-{secret}",
                length=SECRET_LENGTH,
                special=False,
                opts=pulumi.ResourceOptions(parent=parent),
            )
            values[secret] = generated.result
    return values
