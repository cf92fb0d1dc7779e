"""Application Gateways (TLS, probes, WAF), the internal signaling LB; no media LB."""

from __future__ import annotations

AGW = "azure-native:network:ApplicationGateway"
LB = "azure-native:network:LoadBalancer"
WAF = "azure-native:network:WebApplicationFirewallPolicy"


def test_client_gateway_terminates_tls_and_forwards_to_8080(weu_plan) -> None:
    gateway = weu_plan.named(AGW, "prod-weu-client")
    i = gateway.inputs
    assert i["sku"] == {"name": "WAF_v2", "tier": "WAF_v2"}
    assert i["zones"] == ["1", "2", "3"]
    assert i["autoscaleConfiguration"]["minCapacity"] >= 2
    assert [p["port"] for p in i["frontendPorts"]] == [443]
    assert i["httpListeners"][0]["protocol"] == "Https"
    assert i["sslCertificates"][0]["keyVaultSecretId"] == (
        "https://rtcfleet-prod-certs.vault.azure.net/secrets/rtcfleet-client-tls"
    )
    assert i["sslPolicy"]["policyName"] == "AppGwSslPolicy20220101S"
    [settings] = i["backendHttpSettingsCollection"]
    assert (settings["protocol"], settings["port"]) == ("Http", 8080)
    assert settings["cookieBasedAffinity"] == "Enabled" and settings["requestTimeout"] >= 3600
    [probe] = i["probes"]
    assert (probe["protocol"], probe["port"], probe["path"]) == ("Http", 8080, "/readyz")
    assert probe["match"]["statusCodes"] == ["200"]
    assert settings["probe"]["id"].endswith("/applicationGateways/prod-weu-client/probes/readyz")
    assert i["firewallPolicy"]["id"] == weu_plan.named(WAF, "prod-weu-client-waf").id


def test_client_gateway_refuses_internal_paths(weu_plan) -> None:
    policy = weu_plan.named(WAF, "prod-weu-client-waf").inputs
    [rule] = policy["customRules"]
    assert rule["action"] == "Block"
    condition = rule["matchConditions"][0]
    assert condition["operator"] == "BeginsWith" and condition["matchValues"] == ["/internal/"]
    assert policy["policySettings"]["mode"] == "Prevention"


def test_admin_gateway_forwards_443_to_9090_with_its_own_certificate(weu_plan) -> None:
    i = weu_plan.named(AGW, "prod-weu-admin").inputs
    assert i["sslCertificates"][0]["keyVaultSecretId"].endswith("/secrets/rtcfleet-admin-tls")
    assert i["backendHttpSettingsCollection"][0]["port"] == 9090
    assert (i["probes"][0]["port"], i["probes"][0]["path"]) == (9090, "/readyz")
    subnet = i["gatewayIPConfigurations"][0]["subnet"]["id"]
    assert subnet.endswith("/subnets/admin-lb")


def test_gateways_read_certificates_with_their_own_identity(weu_plan) -> None:
    identity = weu_plan.named(
        "azure-native:managedidentity:UserAssignedIdentity", "prod-weu-app-gateways"
    )
    grant = weu_plan.named(
        "azure-native:authorization:RoleAssignment", "prod-weu-app-gateways-read-certificates"
    )
    assert grant.inputs["principalId"] == identity.outputs["principalId"]
    assert grant.inputs["scope"] == weu_plan.settings.certificate_vault_id
    for name in ("prod-weu-client", "prod-weu-admin"):
        identities = weu_plan.named(AGW, name).inputs["identity"]["userAssignedIdentities"]
        assert identities == [identity.id]


def test_signaling_lb_is_internal_on_8080_with_registration_probe(weu_plan) -> None:
    i = weu_plan.named(LB, "prod-weu-signaling").inputs
    [frontend] = i["frontendIPConfigurations"]
    assert "publicIPAddress" not in frontend
    assert frontend["privateIPAddress"] == "10.30.47.254"
    assert frontend["subnet"]["id"].endswith("/subnets/gateway")
    assert frontend["zones"] == ["1", "2", "3"]
    [probe] = i["probes"]
    # media nodes register through it: a probe that needs a registered node would deadlock
    assert (probe["protocol"], probe["port"], probe["requestPath"]) == (
        "Http",
        8080,
        "/readyz/registration",
    )
    assert probe["noHealthyBackendsBehavior"] == "AllProbedUp"
    [rule] = i["loadBalancingRules"]
    assert (rule["protocol"], rule["frontendPort"], rule["backendPort"]) == ("Tcp", 8080, 8080)
    assert rule["probe"]["id"].endswith("/loadBalancers/prod-weu-signaling/probes/readyz")
    assert weu_plan.exports["signalingAddress"] == "10.30.47.254"


def test_media_nodes_have_no_load_balancer(weu_plan, neu_plan) -> None:
    # Clients reach each media node at its own address; TURN is on 3478, never TLS on 443.
    assert [lb.name for lb in weu_plan.of_type(LB)] == ["prod-weu-signaling"]
    assert [lb.name for lb in neu_plan.of_type(LB)] == ["prod-neu-signaling"]
