"""Reading ``stacks/Pulumi.<stack>.yaml`` as the plan, the deploy order and the tests see it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra import spec
from infra.certificates import CERTIFICATE_SECRET_NAMES
from infra.settings_errors import NAMESPACE, SettingsError, config_key


@dataclass(frozen=True)
class StackFile:
    """A stack file's config: plain values and the keys Pulumi stores encrypted."""

    stack: str
    values: dict[str, Any]
    secure_keys: frozenset[str]


def load_stack_file(path: Path) -> StackFile:
    """Read ``Pulumi.<stack>.yaml``; keys without a namespace belong to the project."""
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    document = yaml.safe_load(path.read_text()) or {}
    raw = document.get("config") or {}
    if not isinstance(raw, dict):
        raise SettingsError.one("config", f"{path}: `config` must be a mapping")
    values: dict[str, Any] = {}
    secure: set[str] = set()
    for key, value in raw.items():
        full = key if ":" in key else config_key(key)
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.add(full)
            value = None
        elif full.startswith(f"{NAMESPACE}:") and full.split(":", 1)[1] in (
            *spec.SECRET_NAMES,
            *CERTIFICATE_SECRET_NAMES,
        ):
            raise SettingsError.one(full, f"must be a secret: `pulumi config set --secret {full}`")
        values[full] = value
    return StackFile(stack, values, frozenset(secure))
