"""How stack settings say what is wrong: every problem named by its config key.

A key is written as in ``stacks/Pulumi.<stack>.yaml`` (``rtcfleet:adminAllowList``), so an
operator can fix the file without reading the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

NAMESPACE = "rtcfleet"


def config_key(name: str) -> str:
    """The fully qualified config key (``rtcfleet:adminAllowList``) of a setting."""
    return f"{NAMESPACE}:{name}"


class SettingsError(ValueError):
    """Stack settings that cannot be deployed; each problem names its config key."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"{key}: {message}" for key, message in self.problems))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.problems]

    @classmethod
    def one(cls, key: str, message: str) -> SettingsError:
        return cls([(key, message)])


def describe_validation_error(error: Mapping[str, Any]) -> tuple[str, str]:
    """One of pydantic's ``ValidationError.errors()`` as (config key, message for an operator)."""
    loc = error["loc"]
    key = config_key(str(loc[0])) if loc else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = f"required: set it with `pulumi config set {key} ...`"
    elif error["type"] == "extra_forbidden":
        message = "unknown setting"
    if len(loc) > 1:
        message = f"item {loc[1]}: {message}"
    return key, message
