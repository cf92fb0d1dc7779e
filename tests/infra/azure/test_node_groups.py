"""Scale sets: zones and capacity, pools, public IPs, autoscale, scale-in path, custom data."""

from __future__ import annotations

import base64

VMSS = "azure-native:compute:VirtualMachineScaleSet"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
ROLE_DEF = "azure-native:authorization:RoleDefinition"
ASSIGNMENT = "azure-native:authorization:RoleAssignment"


def _ip(scale_set) -> dict:
    nic = scale_set.inputs["virtualMachineProfile"]["networkProfile"]
    return nic["networkInterfaceConfigurations"][0]["ipConfigurations"][0]


def test_gateways_span_zones_behind_every_entry_point(weu_plan, neu_plan) -> None:
    gateways = weu_plan.named(VMSS, "prod-weu-gateway").inputs
    assert gateways["zones"] == ["1", "2", "3"] and gateways["zoneBalance"] is True
    assert gateways["sku"]["capacity"] == 3 and gateways["sku"]["name"] == "Standard_D2s_v5"
    ip = _ip(weu_plan.named(VMSS, "prod-weu-gateway"))
    assert ip["subnet"]["id"].endswith("/subnets/gateway")
    assert "publicIPAddressConfiguration" not in ip
    pools = [p["id"] for p in ip["applicationGatewayBackendAddressPools"]]
    assert [p.split("/")[-3] for p in pools] == ["prod-weu-client", "prod-weu-admin"]
    assert ip["loadBalancerBackendAddressPools"][0]["id"].endswith(
        "/loadBalancers/prod-weu-signaling/backendAddressPools/gateways"
    )
    assert gateways["upgradePolicy"]["mode"] == "Rolling"
    assert gateways["automaticRepairsPolicy"]["enabled"] is True
    assert neu_plan.named(VMSS, "prod-neu-gateway").inputs["sku"]["capacity"] == 2


def test_media_nodes_have_a_public_ip_each(weu_plan) -> None:
    media = weu_plan.named(VMSS, "prod-weu-media")
    assert media.inputs["zones"] == ["1", "2", "3"]
    assert media.inputs["sku"] == {"name": "Standard_F8s_v2", "tier": "Standard", "capacity": 3}
    ip = _ip(media)
    assert ip["subnet"]["id"].endswith("/subnets/media")
    # a public IP each, without the Flexible-only sku
    assert ip["publicIPAddressConfiguration"] == {
        "name": "public",
        "publicIPAddressVersion": "IPv4",
        "idleTimeoutInMinutes": 15,
    }
    assert media.inputs["orchestrationMode"] == "Uniform"
    profile = media.inputs["virtualMachineProfile"]
    assert "networkApiVersion" not in profile["networkProfile"]
    assert "deleteOption" not in profile["storageProfile"]["osDisk"]
    assert media.inputs["upgradePolicy"]["mode"] == "Manual"
    assert media.inputs["overprovision"] is False


def test_media_autoscale_on_average_cpu(weu_plan, plan_with) -> None:
    media = weu_plan.named(VMSS, "prod-weu-media")
    setting = weu_plan.named(AUTOSCALE, "prod-weu-media-cpu").inputs
    assert setting["targetResourceUri"] == media.id and setting["enabled"] is True
    [profile] = setting["profiles"]
    # the regular scale set: the on-demand base and 20 % of the rest (mediaSpot); spot takes 29
    assert profile["capacity"] == {"minimum": "3", "maximum": "11", "default": "3"}
    out, scale_in = profile["rules"]
    assert out["metricTrigger"]["metricName"] == "Percentage CPU"
    assert out["metricTrigger"]["metricResourceUri"] == media.id
    assert (out["metricTrigger"]["operator"], out["metricTrigger"]["threshold"]) == (
        "GreaterThan",
        50,
    )
    assert out["metricTrigger"]["timeAggregation"] == "Average"
    assert out["scaleAction"] == {
        "direction": "Increase",
        "type": "ChangeCount",
        "value": "1",
        "cooldown": "PT3M",
    }
    assert (scale_in["metricTrigger"]["operator"], scale_in["metricTrigger"]["threshold"]) == (
        "LessThan",
        25,
    )
    assert scale_in["scaleAction"]["direction"] == "Decrease"
    tuned = plan_with("prod-azure-westeurope", mediaCpuTarget=70)
    rules = tuned.named(AUTOSCALE, "prod-weu-media-cpu").inputs["profiles"][0]["rules"]
    assert [r["metricTrigger"]["threshold"] for r in rules] == [70, 35]
    assert sorted(r.name for r in weu_plan.of_type(AUTOSCALE)) == [
        "prod-weu-media-cpu",
        "prod-weu-spot-media-cpu",
    ]


def test_media_scale_in_waits_for_the_drain(weu_plan) -> None:
    media = weu_plan.named(VMSS, "prod-weu-media")
    events = media.inputs["virtualMachineProfile"]["scheduledEventsProfile"]
    assert events["terminateNotificationProfile"] == {"enable": True, "notBeforeTimeout": "PT15M"}
    assert media.inputs["scaleInPolicy"] == {"rules": ["OldestVM"], "forceDeletion": False}
    role = weu_plan.named(ROLE_DEF, "prod-weu-media-scale-in-protection")
    group = weu_plan.named("azure-native:resources:ResourceGroup", "prod-weu-rg").id
    # assignable at the resource group (Azure accepts no narrower scope), granted on the scale set
    assert role.inputs["assignableScopes"] == [group] and role.inputs["scope"] == group
    assert role.inputs["permissions"][0]["actions"] == [
        "Microsoft.Compute/virtualMachineScaleSets/read",
        "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read",
        "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/write",
    ]
    grant = weu_plan.named(ASSIGNMENT, "prod-weu-media-protects-itself")
    identity = weu_plan.named("azure-native:managedidentity:UserAssignedIdentity", "prod-weu-media")
    assert grant.inputs["principalId"] == identity.outputs["principalId"]
    assert grant.inputs["roleDefinitionId"] == role.id and grant.inputs["scope"] == media.id
    gateways = weu_plan.named(VMSS, "prod-weu-gateway").inputs
    assert "scheduledEventsProfile" not in gateways["virtualMachineProfile"]


def test_custom_data_says_where_but_holds_no_secret(weu_plan) -> None:
    secrets = {
        r.outputs["result"] for r in weu_plan.of_type("random:index/randomPassword:RandomPassword")
    }
    for role in ("gateway", "media"):
        scale_set = weu_plan.named(VMSS, f"prod-weu-{role}")
        profile = scale_set.inputs["virtualMachineProfile"]
        script = base64.b64decode(profile["osProfile"]["customData"]).decode()
        identity = weu_plan.named(
            "azure-native:managedidentity:UserAssignedIdentity", f"prod-weu-{role}"
        )
        assert f"RTCFLEET_ROLE={role}" in script and "RTCFLEET_CLOUD=azure" in script
        assert f"RTCFLEET_KEY_VAULT_URI={weu_plan.exports['keyVaultUri']}" in script
        assert f"RTCFLEET_SECRET_NAME={role}-secrets" in script
        assert f"AZURE_CLIENT_ID={identity.outputs['clientId']}" in script
        assert not any(value in script for value in secrets)
        assert "planned-redis-key" not in script
        assert scale_set.inputs["identity"]["userAssignedIdentities"] == [identity.id]
        linux = profile["osProfile"]["linuxConfiguration"]
        assert linux["disablePasswordAuthentication"] is True
        assert "adminPassword" not in profile["osProfile"]
        [key] = linux["ssh"]["publicKeys"]
        assert key["keyData"] == weu_plan.settings.node_ssh_public_key
        assert key["path"] == "/home/rtcfleet/.ssh/authorized_keys"
        assert (
            profile["osProfile"]["computerNamePrefix"]
            == {
                "gateway": "prod-weu-gw",
                "media": "prod-weu-media",
            }[role]
        )
        vault = weu_plan.exports["keyVaultUri"].removeprefix("https://").split(".")[0]
        assert scale_set.tags["rtcfleet:keyVault"] == vault
        assert scale_set.tags["rtcfleet:env"] == "prod"
        assert profile["storageProfile"]["imageReference"]["id"] == weu_plan.settings.image_id
