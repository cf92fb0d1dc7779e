"""Service settings: environment variables over a settings file (JSON or YAML) over defaults.

The image's first-boot script writes the file; an operator overrides one value with an
environment variable without editing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


def load_config_file(path: str | Path | None) -> dict[str, Any]:
    if not path:
        return {}
    path = Path(path)
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: settings file must hold a mapping")
    return data


class _ConfigFileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return load_config_file(self.path)


class ServiceSettings(BaseSettings):
    """Base of each service's settings model; ``CONFIG_ENV`` names its settings-file variable."""

    CONFIG_ENV: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get(cls.CONFIG_ENV) if cls.CONFIG_ENV else None
        return (init_settings, env_settings, _ConfigFileSource(settings_cls, path))

    @classmethod
    def environment(cls, **values: object) -> dict[str, str]:
        """The environment variables that give the service ``values`` (its settings' field
        names), as the local fleet and a machine's first boot write them: each variable's name
        comes from the model alone. A name that is no field raises; ``None`` leaves it out."""
        prefix = cls.model_config.get("env_prefix") or ""
        env = {}
        for name, value in values.items():
            if name not in cls.model_fields:
                raise KeyError(f"{cls.__name__} has no setting {name!r}")
            if value is not None:
                env[f"{prefix}{name.upper()}"] = environment_value(value)
        return env


def environment_value(value: object) -> str:
    """A setting as its environment variable spells it: lists and mappings as JSON."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def describe_errors(exc: ValidationError, env_prefix: str) -> str:
    """One line per bad field, named as the operator sets it (the environment variable)."""
    lines = []
    for err in exc.errors():
        field = "_".join(str(part) for part in err["loc"]).upper()
        lines.append(f"{env_prefix}{field}: {err['msg']}")
    return "\n".join(lines)
