"""Which settings model a stack's config is validated with, picked by the stack's name.

``<env>-global`` takes the global model; ``<env>-<cloud>-<region>`` its cloud's region model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra import spec
from infra.aws.settings import AwsRegionSettings
from infra.azure.settings import AzureRegionSettings
from infra.certificates import CERTIFICATE_SECRET_NAMES
from infra.global_settings import GlobalSettings, global_settings_from_values
from infra.settings import DERIVED_KEYS, RegionSettings, StackName
from infra.settings_errors import SettingsError
from infra.stack_config import pulumi_config_values, validate_stack_config
from infra.stack_names import is_global_stack

SETTINGS_MODELS: dict[str, type[RegionSettings]] = {
    "aws": AwsRegionSettings,
    "azure": AzureRegionSettings,
}

StackSettings = RegionSettings | GlobalSettings


def settings_from_values(stack: str, values: Mapping[str, Any]) -> RegionSettings:
    """Validate a region stack's ``rtcfleet:`` config values; other namespaces are ignored."""
    name = StackName.parse(stack)
    model = SETTINGS_MODELS.get(name.cloud)
    if model is None:
        raise SettingsError.one("stack", f"{stack}: no {name.cloud} region stack exists")
    derived = {"env": name.env, "cloud": name.cloud, "region": name.region}
    skip = (*spec.SECRET_NAMES, *CERTIFICATE_SECRET_NAMES)
    return validate_stack_config(model, stack, values, derived, skip=skip)


def settings_from_pulumi_config(stack: str) -> RegionSettings:
    """The settings of the running region program, from ``pulumi.Config("rtcfleet")``."""
    model = SETTINGS_MODELS.get(StackName.parse(stack).cloud, RegionSettings)
    return settings_from_values(stack, pulumi_config_values(model.setting_names(DERIVED_KEYS)))


def stack_settings(stack: str, values: Mapping[str, Any]) -> StackSettings:
    """The settings of any stack: the global stack's model or its region's cloud model."""
    if is_global_stack(stack):
        return global_settings_from_values(stack, values)
    return settings_from_values(stack, values)
