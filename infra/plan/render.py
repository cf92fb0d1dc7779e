"""A plan as a reviewer reads it: one row per resource with the properties that matter.

Secret values never reach the output: known secret properties and any value equal to a
planned secret are masked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from infra.plan.mocks import RecordedResource
from infra.plan.runner import StackPlan
from infra.spec import ROLE_TAG

MASK = "[secret]"
SECRET_PROPERTIES = frozenset(
    {
        "authToken",
        "password",
        "secretString",
        "result",
        "sharedKey",
        "tunnel1PresharedKey",
        "tunnel2PresharedKey",
    }
)


class _Index:
    """Lookups from ids and ARNs back to what the plan declared, for readable summaries."""

    def __init__(self, plan: StackPlan) -> None:
        self.groups = {
            r.id: r.tags.get(ROLE_TAG, r.name)
            for r in plan.of_type("aws:ec2/securityGroup:SecurityGroup")
        }
        self.zones = {
            r.id: str(r.inputs.get("availabilityZone"))
            for r in plan.of_type("aws:ec2/subnet:Subnet")
        }
        self.arns = {str(r.outputs.get("arn")): r.name for r in plan.resources if r.outputs}

    def group(self, group_id: str) -> str:
        return f"sg:{self.groups.get(group_id, group_id)}"

    def zone_list(self, subnets: Any) -> str:
        return ",".join(sorted({self.zones.get(str(s), str(s)) for s in subnets or []}))


def _n(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _rules(rules: Any, index: _Index) -> str:
    parts = []
    for rule in rules or []:
        ports = f"{_n(rule.get('fromPort'))}" + (
            f"-{_n(rule.get('toPort'))}" if rule.get("toPort") != rule.get("fromPort") else ""
        )
        sources = [
            *(rule.get("cidrBlocks") or []),
            *map(index.group, rule.get("securityGroups") or []),
        ]
        parts.append(f"{rule.get('protocol')}/{ports}<-{'|'.join(sources)}")
    return " ".join(parts) or "none"


def _security_group(r: RecordedResource, index: _Index) -> str:
    egress = _rules(r.inputs.get("egress"), index)
    return f"role={r.tags.get(ROLE_TAG)} in: {_rules(r.inputs.get('ingress'), index)} out: {egress}"


def _load_balancer(r: RecordedResource, index: _Index) -> str:
    scheme = "internal" if r.inputs.get("internal") else "internet-facing"
    groups = ",".join(map(index.group, r.inputs.get("securityGroups") or [])) or "no sg"
    zones = index.zone_list(r.inputs.get("subnets"))
    kind = r.inputs.get("loadBalancerType")
    idle = f" idle={_n(r.inputs['idleTimeout'])}s" if r.inputs.get("idleTimeout") else ""
    return f"{kind} {scheme} zones={zones}{idle} {groups}"


def _listener(r: RecordedResource, index: _Index) -> str:
    actions = r.inputs.get("defaultActions") or []
    targets = [index.arns.get(str(a.get("targetGroupArn")), a.get("type")) for a in actions]
    cert = " tls" if r.inputs.get("certificateArn") else ""
    port = f"{r.inputs.get('protocol')}:{_n(r.inputs.get('port'))}"
    return f"{port}{cert} -> {','.join(map(str, targets))}"


def _listener_rule(r: RecordedResource, index: _Index) -> str:
    paths = [
        v
        for c in r.inputs.get("conditions") or []
        for v in (c.get("pathPattern") or {}).get("values", [])
    ]
    actions = [
        (a.get("fixedResponse") or {}).get("statusCode") or a.get("type")
        for a in r.inputs.get("actions") or []
    ]
    return f"paths={paths} -> {actions}"


def _target_group(r: RecordedResource, index: _Index) -> str:
    health = r.inputs.get("healthCheck") or {}
    sticky = (r.inputs.get("stickiness") or {}).get("enabled", False)
    return (
        f"{r.inputs.get('protocol')}:{_n(r.inputs.get('port'))} "
        f"health={health.get('protocol')}:{health.get('port')}{health.get('path', '')} "
        f"sticky={sticky}"
    )


def _launch_template(r: RecordedResource, index: _Index) -> str:
    tokens = (r.inputs.get("metadataOptions") or {}).get("httpTokens")
    disks = [m.get("ebs") or {} for m in r.inputs.get("blockDeviceMappings") or []]
    volumes = [f"{_n(d.get('volumeSize'))}GB encrypted={d.get('encrypted')}" for d in disks]
    public = [n.get("associatePublicIpAddress") for n in r.inputs.get("networkInterfaces") or []]
    return (
        f"{r.inputs.get('instanceType')} image={r.inputs.get('imageId')} imds-tokens={tokens} "
        f"{' '.join(volumes)} public-ip={','.join(map(str, public))}"
    )


def _group(r: RecordedResource, index: _Index) -> str:
    return (
        f"role={r.tags.get(ROLE_TAG)} "
        f"size={_n(r.inputs.get('minSize'))}-{_n(r.inputs.get('maxSize'))} "
        f"zones={index.zone_list(r.inputs.get('vpcZoneIdentifiers'))} "
        f"targets={len(r.inputs.get('targetGroupArns') or [])} "
        f"warmup={_n(r.inputs.get('defaultInstanceWarmup'))}"
    )


def _scaling(r: RecordedResource, index: _Index) -> str:
    config = r.inputs.get("targetTrackingConfiguration") or {}
    metric = (config.get("predefinedMetricSpecification") or {}).get("predefinedMetricType")
    warmup = _n(r.inputs.get("estimatedInstanceWarmup"))
    return f"{metric} target={_n(config.get('targetValue'))} warmup={warmup}s"


def _hook(r: RecordedResource, index: _Index) -> str:
    return (
        f"{r.inputs.get('lifecycleTransition')} heartbeat={_n(r.inputs.get('heartbeatTimeout'))}s "
        f"default={r.inputs.get('defaultResult')}"
    )


def _redis(r: RecordedResource, index: _Index) -> str:
    i = r.inputs
    return (
        f"{i.get('nodeType')} nodes={_n(i.get('numCacheClusters'))} "
        f"zones={','.join(i.get('preferredCacheClusterAzs') or [])} "
        f"failover={i.get('automaticFailoverEnabled')} multi-az={i.get('multiAzEnabled')} "
        f"at-rest={i.get('atRestEncryptionEnabled')} in-transit={i.get('transitEncryptionEnabled')}"
    )


def _postgres(r: RecordedResource, index: _Index) -> str:
    i = r.inputs
    source = i.get("replicateSourceDb")
    kind = (
        f"replica of {source}" if source else f"{i.get('engine')} {i.get('engineVersion')} primary"
    )
    return (
        f"{i.get('instanceClass')} {kind} multi-az={i.get('multiAz')} "
        f"storage={_n(i.get('allocatedStorage'))} encrypted={i.get('storageEncrypted')} "
        f"backups={_n(i.get('backupRetentionPeriod'))}d public={i.get('publiclyAccessible')} "
        f"deletion-protection={i.get('deletionProtection')}"
    )


def _subnet(r: RecordedResource, index: _Index) -> str:
    tier = r.tags.get("rtcfleet:tier")
    return f"{r.inputs.get('cidrBlock')} {r.inputs.get('availabilityZone')} {tier}"


def _health_check(r: RecordedResource, index: _Index) -> str:
    i = r.inputs
    return (
        f"{i.get('type')} {i.get('fqdn')}:{_n(i.get('port'))}{i.get('resourcePath')} "
        f"every {_n(i.get('requestInterval'))}s, unhealthy after {_n(i.get('failureThreshold'))}"
    )


def _record(r: RecordedResource, index: _Index) -> str:
    i = r.inputs
    latency = [p.get("region") for p in i.get("latencyRoutingPolicies") or []]
    failover = [p.get("type") for p in i.get("failoverRoutingPolicies") or []]
    routing = f"latency={','.join(latency)}" if latency else f"failover={','.join(failover)}"
    check = "checked" if i.get("healthCheckId") else "unchecked"
    targets = ",".join(i.get("records") or [])
    return f"{i.get('type')} {i.get('name')} -> {targets} {routing} {check}"


def _transit_route(r: RecordedResource, index: _Index) -> str:
    i = r.inputs
    return f"{i.get('destinationCidrBlock')} -> {i.get('transitGatewayAttachmentId')}"


SUMMARIES: dict[str, Callable[[RecordedResource, _Index], str]] = {
    "aws:route53/healthCheck:HealthCheck": _health_check,
    "aws:route53/record:Record": _record,
    "aws:ec2transitgateway/route:Route": _transit_route,
    "aws:ec2transitgateway/peeringAttachment:PeeringAttachment": lambda r, _: (
        f"peer region {r.inputs.get('peerRegion')}"
    ),
    "aws:ec2/vpnConnection:VpnConnection": lambda r, _: (
        f"{r.inputs.get('type')} static={r.inputs.get('staticRoutesOnly')} via transit gateway"
    ),
    "azure-native:network:VirtualNetworkGateway": lambda r, _: (
        f"{r.inputs.get('vpnType')} {(r.inputs.get('sku') or {}).get('name')}"
    ),
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:lb/loadBalancer:LoadBalancer": _load_balancer,
    "aws:lb/listener:Listener": _listener,
    "aws:lb/listenerRule:ListenerRule": _listener_rule,
    "aws:lb/targetGroup:TargetGroup": _target_group,
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:autoscaling/group:Group": _group,
    "aws:autoscaling/policy:Policy": _scaling,
    "aws:autoscaling/lifecycleHook:LifecycleHook": _hook,
    "aws:elasticache/replicationGroup:ReplicationGroup": _redis,
    "aws:rds/instance:Instance": _postgres,
    "aws:ec2/subnet:Subnet": _subnet,
    "aws:ec2/vpc:Vpc": lambda r, _: str(r.inputs.get("cidrBlock")),
    "aws:secretsmanager/secret:Secret": lambda r, _: str(r.inputs.get("name")),
    "aws:ssm/parameter:Parameter": lambda r, _: str(r.inputs.get("name")),
    "aws:secretsmanager/secretVersion:SecretVersion": lambda r, _: MASK,
    "random:index/randomPassword:RandomPassword": lambda r, _: (
        f"length={_n(r.inputs.get('length'))}"
    ),
    "pulumi:providers:aws": lambda r, _: f"region={r.inputs.get('region')}",
    "pulumi:pulumi:StackReference": lambda r, _: f"outputs={r.outputs.get('outputNames')}",
}


def short_type(type_token: str) -> str:
    """``aws:ec2/securityGroup:SecurityGroup`` -> ``aws:ec2:SecurityGroup``."""
    package, module, kind = [*type_token.split(":"), "", ""][:3]
    return f"{package}:{module.split('/')[0]}:{kind}" if kind else type_token


def summaries(plan: StackPlan) -> list[tuple[RecordedResource, str]]:
    index = _Index(plan)
    rows = []
    # Sorted, so two plans of the same stack diff cleanly in review.
    for resource in sorted(plan.resources, key=lambda r: (r.type, r.name)):
        if not resource.custom and not resource.type.startswith("pulumi:"):
            continue
        summary = SUMMARIES.get(resource.type, lambda r, _: "")(resource, index)
        rows.append((resource, summary))
    return rows


def plan_table(plan: StackPlan) -> Table:
    table = Table(title=f"{plan.stack}: {len(plan.resources)} resources", show_lines=False)
    table.add_column("type", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("region")
    table.add_column("key properties", overflow="fold")
    for resource, summary in summaries(plan):
        # Text, not markup: summaries contain brackets such as the secret mask.
        table.add_row(
            short_type(resource.type), resource.name, resource.region or "", Text(summary)
        )
    return table


def violations_table(plan: StackPlan) -> Table:
    table = Table(title=f"policy violations: {len(plan.violations)}")
    table.add_column("policy", no_wrap=True)
    table.add_column("resource", overflow="fold")
    table.add_column("message", overflow="fold")
    for violation in plan.violations:
        table.add_row(violation.policy, Text(violation.resource), Text(violation.message))
    return table


def _secret_values(plan: StackPlan) -> set[str]:
    values = {
        str(r.outputs.get("result"))
        for r in plan.of_type("random:index/randomPassword:RandomPassword")
    }
    values |= {str(v) for k, v in plan.exports.items() if k == "dbPassword"}
    from infra.plan.runner import placeholder

    values |= {placeholder(key) for key in plan.placeholders}
    return values


def _masked(value: Any, secrets: set[str], key: str = "") -> Any:
    if key in SECRET_PROPERTIES:
        return MASK
    if isinstance(value, Mapping):
        return {k: _masked(v, secrets, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    if isinstance(value, str) and any(secret in value for secret in secrets):
        return MASK
    return _n(value)


def plan_document(plan: StackPlan) -> dict[str, Any]:
    """The plan as one JSON-ready document, secrets masked."""
    secrets = _secret_values(plan)
    return {
        "stack": plan.stack,
        "passed": plan.passed,
        "seconds": round(plan.seconds, 4),
        "references": plan.references,
        **({"peers": plan.peers} if plan.peers else {}),
        "placeholderSecrets": plan.placeholders,
        "resources": [
            {
                "type": resource.type,
                "name": resource.name,
                "urn": resource.urn,
                "region": resource.region,
                "summary": summary,
                "inputs": _masked(
                    {
                        k: MASK if k in resource.secret_inputs else v
                        for k, v in resource.inputs.items()
                    },
                    secrets,
                ),
            }
            for resource, summary in summaries(plan)
        ],
        "violations": [
            {
                "policy": v.policy,
                "resource": v.resource,
                "type": v.resource_type,
                "message": v.message,
                "mandatory": v.mandatory,
            }
            for v in plan.violations
        ],
        "exports": _masked(plan.exports, secrets),
    }
