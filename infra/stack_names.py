"""How an environment's stacks are named, besides its region stacks (``infra.settings``'s
``StackName``): one ``<env>-global`` stack and one ``<env>-image`` stack."""

from __future__ import annotations

import re

GLOBAL_SUFFIX = "-global"
IMAGE_SUFFIX = "-image"
_GLOBAL = re.compile(r"^(?P<env>[a-z][a-z0-9]{0,15})-global$")
_IMAGE = re.compile(r"^(?P<env>[a-z][a-z0-9]{0,15})-image$")


def global_stack_name(env: str) -> str:
    return f"{env}{GLOBAL_SUFFIX}"


def global_stack_env(stack: str) -> str | None:
    """The environment of a global stack's name (``prod-global`` -> ``prod``), else ``None``."""
    match = _GLOBAL.match(stack)
    return None if match is None else match["env"]


def is_global_stack(stack: str) -> bool:
    """Whether a stack name is an environment's global stack (``prod-global``)."""
    return global_stack_env(stack) is not None


def image_stack_name(env: str) -> str:
    return f"{env}{IMAGE_SUFFIX}"


def image_stack_env(stack: str) -> str | None:
    """The environment of an image stack's name (``prod-image`` -> ``prod``), else ``None``."""
    match = _IMAGE.match(stack)
    return None if match is None else match["env"]


def is_image_stack(stack: str) -> bool:
    """Whether a stack name is an environment's image stack (``prod-image``)."""
    return image_stack_env(stack) is not None
