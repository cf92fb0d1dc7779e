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
from pydantic import ValidationError
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


def describe_errors(exc: ValidationError, env_prefix: str) -> str:
    """One line per bad field, named as the operator sets it (the environment variable)."""
    lines = []
    for err in exc.errors():
        field = "_".join(str(part) for part in err["loc"]).upper()
        lines.append(f"{env_prefix}{field}: {err['msg']}")
    return "\n".join(lines)
