"""The one way a stack's ``rtcfleet:`` config becomes a typed settings model.

Region, global and image stacks each have their own model; all of them read config values
the same way (Pulumi hands structured values over as JSON text), refuse the values their
stack name already fixes, and report every problem by its config key.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from infra.settings_errors import NAMESPACE, SettingsError, config_key, describe_validation_error


class StackConfigModel(BaseModel):
    """A stack's settings: camelCase keys, unknown keys refused, cross-field ``check()``."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def check(self) -> list[tuple[str, str]]:
        """Cross-field problems that single-field validation cannot see."""
        return []

    @classmethod
    def setting_names(cls, derived: Collection[str]) -> list[str]:
        """The camelCase names a stack file may set (the ``derived`` fields come from its name)."""
        return [
            field.alias or name for name, field in cls.model_fields.items() if name not in derived
        ]


Settings = TypeVar("Settings", bound=StackConfigModel)


def decode_config_value(value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON text."""
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def validate_stack_config(
    model: type[Settings],
    stack: str,
    values: Mapping[str, Any],
    derived: Mapping[str, str],
    *,
    skip: Collection[str] = (),
) -> Settings:
    """Validate a stack's ``rtcfleet:`` values; other namespaces and ``skip`` are ignored.

    ``derived`` holds the fields the stack name fixes (``env``...): a file that sets one is
    refused rather than overridden, so where a stack deploys has one source of truth.
    """
    fields: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in values.items():
        namespace, _, short = key.rpartition(":")
        if namespace != NAMESPACE or short in skip:
            continue
        if short in derived:
            problems.append((key, f"comes from the stack name ({stack}); remove it"))
            continue
        fields[short] = decode_config_value(value)
    if problems:
        raise SettingsError(problems)
    try:
        settings = model.model_validate({**fields, **derived})
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(error) for error in exc.errors()) from None
    problems = settings.check()
    if problems:
        raise SettingsError(problems)
    return settings


def pulumi_config_values(names: Collection[str]) -> dict[str, Any]:
    """The running Pulumi program's values of ``names``, keyed as in a stack file."""
    import pulumi

    config = pulumi.Config(NAMESPACE)
    return {config_key(name): value for name in names if (value := config.get(name)) is not None}
