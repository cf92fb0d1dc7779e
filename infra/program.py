"""The Pulumi program: read the stack's settings, declare its cloud's region, export outputs.

``__main__.py`` runs it under the Pulumi CLI; ``infra.plan`` runs the same function under
Pulumi's mocks, so the offline plan and ``pulumi up`` cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import pulumi

from infra.aws.settings import AwsRegionSettings
from infra.azure.settings import AzureRegionSettings
from infra.settings import RegionSettings
from infra.settings_errors import SettingsError
from infra.stack_settings import settings_from_pulumi_config


def declare_region(settings: RegionSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare one region stack's resources for its cloud; returns the stack outputs."""
    if isinstance(settings, AwsRegionSettings):
        from infra.aws.region import aws_region_program

        return aws_region_program(settings)
    if isinstance(settings, AzureRegionSettings):
        from infra.azure.region import azure_region_program

        return azure_region_program(settings)
    raise SettingsError.one(
        "stack", f"{settings.stack}: no {settings.cloud} region program exists yet"
    )


def define_stack(stack: str) -> dict[str, pulumi.Output[Any]]:
    """Read the running stack's config and declare it."""
    from infra.global_settings import global_settings_from_pulumi_config
    from infra.image_stack import image_program
    from infra.stack_names import is_global_stack, is_image_stack

    if is_image_stack(stack):
        return image_program(stack)
    if is_global_stack(stack):
        from infra.global_stack.program import global_program

        return global_program(global_settings_from_pulumi_config(stack))
    return declare_region(settings_from_pulumi_config(stack))


def main() -> None:
    for key, value in define_stack(pulumi.get_stack()).items():
        pulumi.export(key, value)
