"""Reading recorded resources back, for the tests of every cloud's region program."""

from __future__ import annotations

from infra.plan.mocks import RecordedResource
from infra.spec import ROLE_TAG


def of_type(resources: list[RecordedResource], type_token: str) -> list[RecordedResource]:
    return [r for r in resources if r.type == type_token]


def one(resources: list[RecordedResource], type_token: str, name: str | None = None):
    matches = [r for r in of_type(resources, type_token) if name is None or r.name == name]
    assert len(matches) == 1, f"{len(matches)} {type_token} named {name!r}"
    return matches[0]


def by_role(resources: list[RecordedResource], type_token: str) -> dict[str, RecordedResource]:
    return {r.tags[ROLE_TAG]: r for r in of_type(resources, type_token)}
