"""Each region's gateways learn the environment's other regions: their names from
rtcfleet:peerStacks, their room-lookup URLs (the media-signaling LB over the private network)
and client signaling URLs from the peer stacks' outputs, and the one cluster secret the
lookups authenticate with. Read back from the decoded settings documents of planned stacks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway_node.settings import GatewaySettings
from infra.outputs import CLUSTER_SECRET, ROOM_LOOKUP_URL, SIGNALING_URL
from infra.plan.runner import Planner, StackConfigs, StackPlan
from infra.reach import environment_stacks
from rtcfleet.bundle.first_boot import NodeFacts, gateway_environment
from tests.infra.conftest import example_values, settings_error

USE, EU, WEU, NEU = (
    "prod-aws-us-east-1",
    "prod-aws-eu-west-1",
    "prod-azure-westeurope",
    "prod-azure-northeurope",
)
REGIONS = {USE: "us-east-1", EU: "eu-west-1", WEU: "westeurope", NEU: "northeurope"}
PREFIXES = {USE: "prod-use1", EU: "prod-euw1", WEU: "prod-weu", NEU: "prod-neu"}
SECRETS = {
    "clusterSecret": "c" * 32,
    "redisAuthToken": "r" * 24,
    "dbPassword": "p" * 24,
    "apiSecret": "a" * 32,
    "adminToken": "t" * 32,
}


def gateway_document(plan: StackPlan) -> dict[str, Any]:
    if "-aws-" in plan.stack:
        name = f"{PREFIXES[plan.stack]}-gateway-settings"
        return dict(json.loads(plan.named("aws:ssm/parameter:Parameter", name).inputs["value"]))
    [secret] = [
        r
        for r in plan.of_type("azure-native:keyvault:Secret")
        if r.inputs.get("secretName") == "gateway-settings"
    ]
    return dict(json.loads(secret.inputs["properties"]["value"]))


def gateway_secret(plan: StackPlan, name: str) -> str:
    if "-aws-" in plan.stack:
        version = plan.named(
            "aws:secretsmanager/secretVersion:SecretVersion", f"{PREFIXES[plan.stack]}-gateway"
        )
        return str(json.loads(version.inputs["secretString"])[name])
    [secret] = [
        r
        for r in plan.of_type("azure-native:keyvault:Secret")
        if r.inputs.get("secretName") == "gateway-secrets"
    ]
    return str(json.loads(secret.inputs["properties"]["value"])[name])


@pytest.fixture(scope="module")
def prod_plans(planner: Planner) -> dict[str, StackPlan]:
    return {stack: planner.plan(stack) for stack in environment_stacks("prod")}


def test_each_region_lists_the_others_signaling_lb(prod_plans) -> None:
    for stack, region in REGIONS.items():
        document = gateway_document(prod_plans[stack])
        others = {s: r for s, r in REGIONS.items() if s != stack}
        assert document["peerRegions"] == {
            r: [prod_plans[s].exports[ROOM_LOOKUP_URL]] for s, r in others.items()
        }
        # no region of the example names its own client URL: nowhere to redirect a client to
        assert document["peerSignalUrls"] == {r: [] for r in others.values()}
        assert region not in document["peerRegions"]
    # the lookup URL is the region's media-signaling LB, the room-lookup flow's destination
    use = prod_plans[USE].exports
    assert use[ROOM_LOOKUP_URL] == f"http://{use['signalingLbDnsName']}:8080"
    weu = prod_plans[WEU].exports
    assert weu[ROOM_LOOKUP_URL] == f"http://{weu['signalingAddress']}:8080"


def test_first_boot_hands_the_peers_to_the_gateway(prod_plans, monkeypatch) -> None:
    document = gateway_document(prod_plans[NEU])
    facts = NodeFacts("azure", "gateway", "prod", "northeurope", "gw-1", "10.31.32.4", None,
                      document, SECRETS)  # fmt: skip
    for key, value in gateway_environment(facts).items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()
    assert settings.peer_regions == document["peerRegions"]
    assert sorted(settings.peer_regions) == ["eu-west-1", "us-east-1", "westeurope"]
    # empty lists: no redirect target known, so no client is sent anywhere
    assert settings.peer_signal_urls == {r: [] for r in settings.peer_regions}


def test_every_region_shares_the_writer_cluster_secret(prod_plans) -> None:
    writer = prod_plans[USE]
    password = "random:index/randomPassword:RandomPassword"
    generated = writer.named(password, "prod-use1-clusterSecret")
    assert writer.exports[CLUSTER_SECRET] == generated.outputs["result"]
    for stack in (USE, EU, WEU, NEU):
        assert gateway_secret(prod_plans[stack], "clusterSecret") == generated.outputs["result"]
        if stack != USE:
            names = {r.name for r in prod_plans[stack].resources}
            assert f"{PREFIXES[stack]}-clusterSecret" not in names
            assert CLUSTER_SECRET not in prod_plans[stack].exports


def test_a_peer_not_deployed_yet_is_named_without_a_url() -> None:
    """westeurope deploys before northeurope exists: the name is there (every region hashes
    rooms over the same set from the start), the URL comes with the next `pulumi up`."""
    configs = {stack: example_values(stack) for stack in (USE, EU, WEU)}
    plan = Planner(StackConfigs(configs)).plan(WEU)
    assert plan.passed, plan.violations
    document = gateway_document(plan)
    assert document["peerRegions"]["northeurope"] == []
    assert document["peerRegions"]["eu-west-1"] != []
    assert plan.peers == [USE, EU, NEU] and plan.references == [USE]


def test_a_region_signaling_url_reaches_the_others() -> None:
    url = "wss://eu-west-1.api.rtc.example.com/v1/signal"
    configs = {stack: example_values(stack) for stack in (USE, EU, WEU, NEU)}
    configs[EU]["rtcfleet:signalingUrl"] = url
    planner = Planner(StackConfigs(configs))
    eu = planner.plan(EU)
    assert eu.exports[SIGNALING_URL] == url
    assert gateway_document(eu)["publicUrl"] == url
    for stack in (USE, WEU, NEU):
        assert gateway_document(planner.plan(stack))["peerSignalUrls"]["eu-west-1"] == [url]


@pytest.mark.parametrize(
    ("peers", "says"),
    [
        ([EU, "dev-aws-us-east-1"], "is not a stack of environment 'prod'"),
        ([EU, USE], "is this stack"),
        ([EU, "prod-aws-eu-west-1"], "region eu-west-1 is listed twice"),
        (["prod-gcp-europe-west1"], "is not a region stack name"),
    ],
)
def test_bad_peer_stacks_are_named_by_their_key(peers: list[str], says: str) -> None:
    error = settings_error(USE, peerStacks=peers)
    assert error.keys == ["rtcfleet:peerStacks"] and says in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "https://eu-west-1.api.rtc.example.com/v1/signal",
        "ws://eu-west-1.api.rtc.example.com/v1/signal",
        "wss://eu-west-1.api.rtc.example.com/",
        "wss://user:pw@eu-west-1.api.rtc.example.com/v1/signal",
    ],
)
def test_a_bad_signaling_url_is_named_by_its_key(url: str) -> None:
    assert settings_error(EU, signalingUrl=url).keys == ["rtcfleet:signalingUrl"]
