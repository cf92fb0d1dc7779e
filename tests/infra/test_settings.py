"""Settings that cannot be deployed: a clear error naming the key, and nothing planned."""

from __future__ import annotations

import json

import pytest

from infra.aws.settings import AwsRegionSettings
from infra.plan import runner
from infra.settings import StackName
from infra.settings_errors import SettingsError
from infra.stack_settings import settings_from_values
from tests.infra.conftest import example_values


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A settings error must stop the plan before any program runs."""

    def refuse(*args, **kwargs):
        raise AssertionError("a program ran despite bad settings")

    monkeypatch.setattr(runner, "run_program", refuse)


def _error(plan_with, stack: str = "prod-aws-us-east-1", **changes) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        plan_with(stack, **changes)
    return caught.value


def test_admin_console_open_to_the_internet(plan_with) -> None:
    error = _error(plan_with, adminAllowList=["203.0.113.0/24", "0.0.0.0/0"])
    assert error.keys == ["rtcfleet:adminAllowList"]
    assert "0.0.0.0/0 would open the admin console" in str(error)


def test_one_availability_zone(plan_with) -> None:
    error = _error(plan_with, availabilityZones=["us-east-1a"])
    assert error.keys == ["rtcfleet:availabilityZones"]


def test_zone_of_another_region(plan_with) -> None:
    error = _error(plan_with, availabilityZones=["us-east-1a", "eu-west-1b"])
    assert error.keys == ["rtcfleet:availabilityZones"] and "eu-west-1b" in str(error)


def test_missing_certificate(plan_with) -> None:
    error = _error(plan_with, certificates=None)
    assert error.keys == ["rtcfleet:certificates"]
    assert "required: set rtcfleet:certificates" in str(error)


def test_certificate_of_another_region(plan_with) -> None:
    error = _error(
        plan_with,
        "prod-aws-eu-west-1",
        certificates=None,
        certificate="arn:aws:acm:us-east-1:402938475610:certificate/"
        "6c1d2e3f-9a8b-4a5b-8c9d-0e1f2a3b4c5d",
    )
    assert error.keys == ["rtcfleet:certificate"] and "us-east-1" in str(error)


def test_unknown_home_region_and_unknown_key(plan_with) -> None:
    assert _error(plan_with, homeRegion="us-mars-1").keys == ["rtcfleet:homeRegion"]
    assert _error(plan_with, adminAllowlist=["203.0.113.0/24"]).keys == ["rtcfleet:adminAllowlist"]


def test_region_comes_from_the_stack_name_only() -> None:
    values = example_values("prod-aws-us-east-1")
    with pytest.raises(SettingsError) as caught:
        settings_from_values("prod-aws-us-east-1", {**values, "rtcfleet:region": "eu-west-1"})
    assert caught.value.keys == ["rtcfleet:region"]
    with pytest.raises(SettingsError) as caught:
        settings_from_values("prod-aws-us-mars-1", values)
    assert caught.value.keys[0] == "stack" and "us-mars-1" in str(caught.value)


def test_azure_stack_names_its_missing_keys() -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_values("prod-azure-westeurope", {})
    assert "rtcfleet:certificateVaultId" in caught.value.keys


def test_public_vpc_range_and_peer_overlap(plan_with) -> None:
    assert _error(plan_with, vpcCidr="8.8.0.0/16").keys == ["rtcfleet:vpcCidr"]
    assert _error(plan_with, peeredCidrs=["10.10.128.0/17"]).keys == ["rtcfleet:peeredCidrs"]


def test_several_problems_are_all_named(plan_with) -> None:
    error = _error(
        plan_with,
        availabilityZones=["us-east-1a"],
        certificates={"client": {"mode": "bought"}},
    )
    assert set(error.keys) == {"rtcfleet:availabilityZones", "rtcfleet:certificates"}


def test_config_values_arrive_as_text_from_pulumi() -> None:
    values = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in example_values("prod-aws-us-east-1").items()
    }
    settings = settings_from_values("prod-aws-us-east-1", values)
    assert isinstance(settings, AwsRegionSettings)
    assert settings.gateway_count == 3
    assert [str(c) for c in settings.admin_allow_list] == ["198.51.100.0/26", "203.0.113.10/32"]


def test_stack_name_parts() -> None:
    assert StackName.parse("prod-aws-ap-southeast-1") == StackName("prod", "aws", "ap-southeast-1")
    with pytest.raises(SettingsError):
        StackName.parse("prod-global")
