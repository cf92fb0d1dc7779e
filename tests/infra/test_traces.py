"""The nodes' tracing settings: stack settings, validated by key, that reach both node roles on
both clouds through their settings documents, and that first boot turns into each service's
own variables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_node.settings import GatewaySettings
from infra.plan.runner import Planner, StackConfigs, StackPlan
from media_node.settings import MediaNodeSettings
from rtcfleet.bundle.first_boot import NodeFacts, gateway_environment, media_environment
from tests.infra.conftest import example_values, settings_error

ENDPOINT = "https://otel-collector.rtc.example.com:4318"
SECRETS = {
    "clusterSecret": "c" * 32,
    "redisAuthToken": "r" * 24,
    "dbPassword": "p" * 24,
    "apiSecret": "a" * 32,
    "adminToken": "t" * 32,
}
SSM = "aws:ssm/parameter:Parameter"
SECRET = "azure-native:keyvault:Secret"


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("ftp://collector:4318", "is not an http(s) URL"),
        ("collector:4318", "is not an http(s) URL"),
        ("https://", "is not an http(s) URL"),
        ("https://user:key@collector", "carries credentials"),
        ("http://collector:99999", "is not a URL"),
        ("http://collector:4318/?x=1", "no query"),
    ],
)
def test_a_bad_endpoint_is_named_by_its_key(endpoint: str, says: str) -> None:
    error = settings_error("prod-azure-westeurope", otlpEndpoint=endpoint)
    assert error.keys == ["rtcfleet:otlpEndpoint"]
    assert says in str(error)


@pytest.mark.parametrize("ratio", [1.5, -0.1, "half", float("nan")])
def test_a_ratio_outside_zero_to_one_is_named_by_its_key(ratio: object) -> None:
    error = settings_error("prod-aws-us-east-1", otlpEndpoint=ENDPOINT, traceSampleRatio=ratio)
    assert error.keys == ["rtcfleet:traceSampleRatio"]


def test_a_ratio_without_an_endpoint_is_refused() -> None:
    error = settings_error("prod-aws-us-east-1", traceSampleRatio=0.25)
    assert error.keys == ["rtcfleet:traceSampleRatio"]
    assert "tracing is off without rtcfleet:otlpEndpoint" in str(error)


def _aws_documents(plan: StackPlan, prefix: str) -> dict[str, dict[str, Any]]:
    return {
        role: json.loads(plan.named(SSM, f"{prefix}-{role}-settings").inputs["value"])
        for role in ("gateway", "media")
    }


def _azure_documents(plan: StackPlan) -> dict[str, dict[str, Any]]:
    found = {
        r.inputs.get("secretName"): json.loads(r.inputs["properties"]["value"])
        for r in plan.of_type(SECRET)
        if str(r.inputs.get("secretName")).endswith("-settings")
    }
    return {"gateway": found["gateway-settings"], "media": found["media-settings"]}


def _environments(cloud: str, documents: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """What first boot writes for each role from its decoded settings document."""

    def facts(role: str) -> NodeFacts:
        document = documents[role]
        return NodeFacts(
            cloud, role, "prod", document["region"], "i-1", "10.10.0.5", None, document, SECRETS
        )

    return {
        "gateway": gateway_environment(facts("gateway")),
        "media": media_environment(facts("media")),
    }


@pytest.fixture(scope="module")
def traced_plans() -> dict[str, StackPlan]:
    configs = {
        stack: example_values(stack) for stack in ("prod-aws-us-east-1", "prod-azure-westeurope")
    }
    for values in configs.values():
        values["rtcfleet:otlpEndpoint"] = ENDPOINT
        values["rtcfleet:traceSampleRatio"] = "0.2"  # as `pulumi config set` stores it
        values.pop("rtcfleet:peerStacks")  # the two stacks alone
    planner = Planner(StackConfigs(configs))
    return {stack: planner.plan(stack) for stack in ("prod-aws-us-east-1", "prod-azure-westeurope")}


def test_both_roles_on_both_clouds_get_the_receiver(traced_plans, monkeypatch) -> None:
    aws = _aws_documents(traced_plans["prod-aws-us-east-1"], "prod-use1")
    azure = _azure_documents(traced_plans["prod-azure-westeurope"])
    for cloud, documents in (("aws", aws), ("azure", azure)):
        for document in documents.values():
            assert (document["otlpEndpoint"], document["traceSampleRatio"]) == (ENDPOINT, 0.2)
        env = _environments(cloud, documents)
        assert env["gateway"]["RTCFLEET_GATEWAY_OTLP_ENDPOINT"] == ENDPOINT
        assert env["gateway"]["RTCFLEET_GATEWAY_TRACE_SAMPLE_RATIO"] == "0.2"
        assert env["media"]["RTCFLEET_MEDIA_OTLP_ENDPOINT"] == ENDPOINT
        assert env["media"]["RTCFLEET_MEDIA_TRACE_SAMPLE_RATIO"] == "0.2"
        # and each service's own settings model starts with them
        for key, value in {**env["gateway"], **env["media"]}.items():
            monkeypatch.setenv(key, value)
        media, gateway = MediaNodeSettings(), GatewaySettings()
        assert (media.otlp_endpoint, media.trace_sample_ratio) == (ENDPOINT, 0.2)
        assert (gateway.otlp_endpoint, gateway.trace_sample_ratio) == (ENDPOINT, 0.2)


def test_no_endpoint_no_tracing_keys(home_plan) -> None:
    for document in _aws_documents(home_plan, "prod-use1").values():
        assert "otlpEndpoint" not in document and "traceSampleRatio" not in document
