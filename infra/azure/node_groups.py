"""Virtual machine scale sets of gateways and media nodes, from the Compute Gallery image.

Uniform orchestration: it is the mode in which instance protection (``protectFromScaleIn``),
terminate notifications, a scale-in policy and a public IP per instance all work together on
one scale set; Flexible orchestration offers only resource locks in place of instance
protection (docs/azure.md says why that decides it). Properties Azure documents as
Flexible-only (``networkApiVersion``, the OS disk's ``deleteOption``, a public-IP ``sku``) are
therefore never set. Every instance runs as its role's user-assigned identity, which may read
its role's Key Vault secrets and nothing else. Logins take the operators' SSH key only
(password authentication off), and no NSG admits port 22: the key is for break-glass access
through Azure Bastion or the serial console, never for routine work.

Graceful scale-in of media nodes (the node-side drain agent is built separately):

1. While a media node hosts rooms, its drain agent sets ``protectFromScaleIn`` on its own
   instance (the identity holds a custom role allowing exactly that, on this scale set only).
   Autoscale never picks a protected instance, so scale-in never interrupts a live call, and a
   drain may take as long as ``drainTimeoutSeconds`` without any Azure deadline.
2. When its rooms end (or the bound expires and the rest are cut), the agent clears protection.
3. Scale-in then picks unprotected nodes (oldest first). Scheduled Events announce the
   deletion with a ``Terminate`` event at least ``notBeforeTimeout`` (15 minutes, Azure's
   maximum) ahead; the agent stops taking rooms, finishes the short tail of anything placed in
   the meantime, and approves the event early so the instance goes at once.

Azure's 15-minute terminate notice alone could not hold an hour-long call, which is why
protection while rooms are live, not the notice, is what bounds a drain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from infra.azure.identities import grant, stable_guid
from infra.azure.spot import spot_profile
from infra.node_boot import boot_script
from infra.scaling import CpuScaling, Drain
from infra.spec import (
    CLIENT_SIGNALING_PORT,
    ENV_TAG,
    KEY_VAULT_TAG,
    LIVENESS_PATH,
    MEDIA_HEALTH_PORT,
    ROLE_TAG,
    Role,
)

ADMIN_USER = "rtcfleet"
# Each role's computer names start differently, so a host name says what the machine is and
# two scale sets never hand out the same name (Uniform appends the instance id to the prefix).
COMPUTER_NAME_PREFIXES = {Role.GATEWAY: "gw", Role.MEDIA_NODE: "media"}
# Azure's longest terminate notice; the drain agent approves the event as soon as it is done.
TERMINATE_NOTICE = "PT15M"
HEALTH_GRACE = "PT10M"
SCALE_OUT_WINDOW = "PT5M"
SCALE_IN_WINDOW = "PT10M"
# What the media identity may do to its own scale set: read it and set instance protection.
PROTECTION_ACTIONS = (
    "Microsoft.Compute/virtualMachineScaleSets/read",
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read",
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/write",
)


@dataclass
class NodeGroupArgs:
    prefix: str
    role: Role
    env: str
    region: str
    resource_group_name: pulumi.Input[str]
    location: str
    subscription_id: pulumi.Input[str]
    zones: Sequence[str]
    subnet_id: pulumi.Input[str]
    image_id: pulumi.Input[str]
    vm_size: str
    # the group's size; with ``scaling``, the bounds autoscale keeps it in
    min_size: int
    max_size: int
    identity_id: pulumi.Input[str]
    identity_client_id: pulumi.Input[str]
    identity_principal_id: pulumi.Input[str]
    vault_uri: pulumi.Input[str]
    vault_name: str
    secret_name: str
    settings_name: str
    ssh_public_key: str
    app_gateway_pools: Sequence[pulumi.Input[str]] = ()
    load_balancer_pools: Sequence[pulumi.Input[str]] = ()
    # Media nodes advertise their own public address in ICE candidates (1:1 NAT).
    public_ip: bool = False
    scaling: CpuScaling | None = None
    # Terminate notice, scale-in policy and self-protection for nodes that drain.
    drain: Drain | None = None
    # Spot priority, evicted machines deleted (see infra/azure/spot.py)
    spot: bool = False
    disk_gb: int = 30
    tags: dict[str, str] = field(default_factory=dict)


def computer_name_prefix(prefix: str, role: Role) -> str:
    """``prod-weu`` + media -> ``prod-weu-media``; Uniform appends a 6-character instance id."""
    return f"{prefix}-{COMPUTER_NAME_PREFIXES[role]}"


def custom_data(args: NodeGroupArgs, vault_uri: str, client_id: str) -> str:
    """Who the node is and where its settings and secrets live; names only, no values."""
    return boot_script(
        args.role,
        {
            "RTCFLEET_ROLE": args.role.value,
            "RTCFLEET_ENV": args.env,
            "RTCFLEET_REGION": args.region,
            "RTCFLEET_CLOUD": "azure",
            "RTCFLEET_KEY_VAULT_URI": vault_uri,
            "RTCFLEET_SECRET_NAME": args.secret_name,
            "RTCFLEET_SETTINGS_SECRET_NAME": args.settings_name,
            "AZURE_CLIENT_ID": client_id,
        },
    )


class NodeGroup(pulumi.ComponentResource):
    """One role's scale set, and for media nodes their autoscale and scale-in protection."""

    scale_set: azure_native.compute.VirtualMachineScaleSet
    autoscale: azure_native.monitor.AutoscaleSetting | None
    protection_role: azure_native.authorization.RoleDefinition | None

    def __init__(
        self, name: str, args: NodeGroupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:NodeGroup", name, None, opts)
        self._args = args
        self._base = f"{args.prefix}-{args.role.value}"
        self._tags = {
            **args.tags,
            ROLE_TAG: args.role.value,
            ENV_TAG: args.env,
            KEY_VAULT_TAG: args.vault_name,
        }

        self.scale_set = self._scale_set()
        self.protection_role = None
        if args.drain is not None:
            self.protection_role = self._scale_in_protection()
        self.autoscale = None
        if args.scaling is not None:
            self.autoscale = self._autoscale(args.scaling)
        self.register_outputs({"scaleSetId": self.scale_set.id})

    def _ip_configuration(
        self,
    ) -> azure_native.compute.VirtualMachineScaleSetIPConfigurationArgs:
        """The node's one NIC: its subnet, the pools it joins, and (media) a public address."""
        args = self._args
        compute = azure_native.compute
        return compute.VirtualMachineScaleSetIPConfigurationArgs(
            name="primary",
            primary=True,
            subnet=compute.ApiEntityReferenceArgs(id=args.subnet_id),
            application_gateway_backend_address_pools=[
                compute.SubResourceArgs(id=pool) for pool in args.app_gateway_pools
            ]
            or None,
            load_balancer_backend_address_pools=[
                compute.SubResourceArgs(id=pool) for pool in args.load_balancer_pools
            ]
            or None,
            public_ip_address_configuration=(
                compute.VirtualMachineScaleSetPublicIPAddressConfigurationArgs(
                    name="public", public_ip_address_version="IPv4", idle_timeout_in_minutes=15
                )
                if args.public_ip
                else None
            ),
        )

    def _health_extension(
        self,
    ) -> azure_native.compute.VirtualMachineScaleSetExtensionProfileArgs | None:
        # The health extension probes liveness on the machine itself, and automatic repairs act
        # on it alone: a gateway whose Redis fails over, or a media node whose gateway is away,
        # is alive and stays. (Load balancers route on readiness; see load_balancers.py.)
        role = self._args.role
        if role not in (Role.GATEWAY, Role.MEDIA_NODE):
            return None
        compute = azure_native.compute
        return compute.VirtualMachineScaleSetExtensionProfileArgs(
            extensions=[
                compute.VirtualMachineScaleSetExtensionArgs(
                    name="health",
                    publisher="Microsoft.ManagedServices",
                    type="ApplicationHealthLinux",
                    type_handler_version="1.0",
                    auto_upgrade_minor_version=True,
                    settings={
                        "protocol": "http",
                        "port": CLIENT_SIGNALING_PORT
                        if role is Role.GATEWAY
                        else MEDIA_HEALTH_PORT,
                        "requestPath": LIVENESS_PATH,
                    },
                )
            ]
        )

    def _upgrade_policy(self) -> azure_native.compute.UpgradePolicyArgs:
        compute = azure_native.compute
        if self._args.role is not Role.GATEWAY:
            # Media nodes are replaced by draining, never by an in-place rolling upgrade.
            return compute.UpgradePolicyArgs(mode=compute.UpgradeMode.MANUAL)
        return compute.UpgradePolicyArgs(
            mode=compute.UpgradeMode.ROLLING,
            rolling_upgrade_policy=compute.RollingUpgradePolicyArgs(
                max_batch_instance_percent=34,
                max_unhealthy_instance_percent=34,
                max_unhealthy_upgraded_instance_percent=34,
                pause_time_between_batches="PT30S",
                prioritize_unhealthy_instances=True,
            ),
        )

    def _os_profile(self) -> azure_native.compute.VirtualMachineScaleSetOSProfileArgs:
        """Who the node is (its boot script) and the operators' break-glass SSH key."""
        args = self._args
        compute = azure_native.compute
        boot = pulumi.Output.all(args.vault_uri, args.identity_client_id).apply(
            lambda values: custom_data(args, str(values[0]), str(values[1]))
        )
        return compute.VirtualMachineScaleSetOSProfileArgs(
            computer_name_prefix=computer_name_prefix(args.prefix, args.role),
            admin_username=ADMIN_USER,
            custom_data=boot,
            linux_configuration=compute.LinuxConfigurationArgs(
                disable_password_authentication=True,
                provision_vm_agent=True,
                ssh=compute.SshConfigurationArgs(
                    public_keys=[
                        compute.SshPublicKeyArgs(
                            path=f"/home/{ADMIN_USER}/.ssh/authorized_keys",
                            key_data=args.ssh_public_key,
                        )
                    ]
                ),
            ),
        )

    def _scale_set(self) -> azure_native.compute.VirtualMachineScaleSet:
        args = self._args
        compute = azure_native.compute
        health = self._health_extension()
        draining = args.drain is not None
        return compute.VirtualMachineScaleSet(
            self._base,
            vm_scale_set_name=self._base,
            resource_group_name=args.resource_group_name,
            location=args.location,
            orchestration_mode="Uniform",
            sku=compute.SkuArgs(name=args.vm_size, tier="Standard", capacity=args.min_size),
            zones=list(args.zones),
            zone_balance=True,
            platform_fault_domain_count=1,
            single_placement_group=False,
            # Extra machines that start and register only to be deleted would confuse placement.
            overprovision=False,
            identity=compute.VirtualMachineScaleSetIdentityArgs(
                type=compute.ResourceIdentityType.USER_ASSIGNED,
                user_assigned_identities=[args.identity_id],
            ),
            upgrade_policy=self._upgrade_policy(),
            automatic_repairs_policy=(
                compute.AutomaticRepairsPolicyArgs(enabled=True, grace_period=HEALTH_GRACE)
                if health
                else None
            ),
            scale_in_policy=(
                compute.ScaleInPolicyArgs(rules=["OldestVM"], force_deletion=False)
                if draining
                else None
            ),
            virtual_machine_profile=compute.VirtualMachineScaleSetVMProfileArgs(
                os_profile=self._os_profile(),
                storage_profile=compute.VirtualMachineScaleSetStorageProfileArgs(
                    image_reference=compute.ImageReferenceArgs(id=args.image_id),
                    os_disk=compute.VirtualMachineScaleSetOSDiskArgs(
                        create_option="FromImage",
                        caching=compute.CachingTypes.READ_WRITE,
                        disk_size_gb=args.disk_gb,
                        managed_disk=compute.VirtualMachineScaleSetManagedDiskParametersArgs(
                            storage_account_type="Premium_LRS"
                        ),
                    ),
                ),
                network_profile=compute.VirtualMachineScaleSetNetworkProfileArgs(
                    network_interface_configurations=[
                        compute.VirtualMachineScaleSetNetworkConfigurationArgs(
                            name="primary",
                            primary=True,
                            enable_accelerated_networking=True,
                            ip_configurations=[self._ip_configuration()],
                        )
                    ],
                ),
                scheduled_events_profile=(
                    compute.ScheduledEventsProfileArgs(
                        terminate_notification_profile=compute.TerminateNotificationProfileArgs(
                            enable=True, not_before_timeout=TERMINATE_NOTICE
                        )
                    )
                    if draining
                    else None
                ),
                extension_profile=health,
                diagnostics_profile=compute.DiagnosticsProfileArgs(
                    boot_diagnostics=compute.BootDiagnosticsArgs(enabled=True)
                ),
                **spot_profile(args.spot),
            ),
            tags=self._tags,
            # Autoscale owns the media fleet's size once it exists.
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["sku.capacity"] if args.scaling else None
            ),
        )

    def _scale_in_protection(self) -> azure_native.authorization.RoleDefinition:
        """What lets a draining node protect its own instance from scale-in, and nothing else."""
        args = self._args
        base = self._base
        # A role definition is assignable at a management group, subscription or resource
        # group only; the assignment below narrows it to this one scale set.
        group_id = pulumi.Output.concat(
            "/subscriptions/",
            args.subscription_id,
            "/resourceGroups/",
            args.resource_group_name,
        )
        protection_role = azure_native.authorization.RoleDefinition(
            f"{base}-scale-in-protection",
            role_definition_id=stable_guid(base, "scale-in-protection"),
            role_name=f"rtcfleet {base} scale-in protection",
            description="Media nodes protect themselves from scale-in while rooms are live",
            role_type="CustomRole",
            scope=group_id,
            assignable_scopes=[group_id],
            permissions=[
                azure_native.authorization.PermissionArgs(actions=list(PROTECTION_ACTIONS))
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        grant(
            f"{base}-protects-itself",
            args.identity_principal_id,
            protection_role.id,
            self.scale_set.id,
            "rtcfleet media nodes set protectFromScaleIn on their own instance",
            parent=self,
        )
        return protection_role

    def _autoscale(self, scaling: CpuScaling) -> azure_native.monitor.AutoscaleSetting:
        args = self._args
        base = self._base
        monitor = azure_native.monitor
        cooldown = f"PT{max(scaling.warmup_seconds // 60, 1)}M"

        def rule(
            direction: azure_native.monitor.ScaleDirection,
            operator: azure_native.monitor.ComparisonOperationType,
            threshold: int,
            window: str,
        ) -> azure_native.monitor.ScaleRuleArgs:
            return monitor.ScaleRuleArgs(
                metric_trigger=monitor.MetricTriggerArgs(
                    metric_name="Percentage CPU",
                    metric_namespace="microsoft.compute/virtualmachinescalesets",
                    metric_resource_uri=self.scale_set.id,
                    operator=operator,
                    statistic=monitor.MetricStatisticType.AVERAGE,
                    threshold=float(threshold),
                    time_aggregation=monitor.TimeAggregationType.AVERAGE,
                    time_grain="PT1M",
                    time_window=window,
                ),
                scale_action=monitor.ScaleActionArgs(
                    direction=direction,
                    type=monitor.ScaleType.CHANGE_COUNT,
                    value="1",
                    cooldown=cooldown,
                ),
            )

        return monitor.AutoscaleSetting(
            f"{base}-cpu",
            autoscale_setting_name=f"{base}-cpu",
            resource_group_name=args.resource_group_name,
            location=args.location,
            enabled=True,
            target_resource_uri=self.scale_set.id,
            profiles=[
                monitor.AutoscaleProfileArgs(
                    name="average-cpu",
                    capacity=monitor.ScaleCapacityArgs(
                        minimum=str(args.min_size),
                        maximum=str(args.max_size),
                        default=str(args.min_size),
                    ),
                    rules=[
                        rule(
                            monitor.ScaleDirection.INCREASE,
                            monitor.ComparisonOperationType.GREATER_THAN,
                            scaling.target_percent,
                            SCALE_OUT_WINDOW,
                        ),
                        rule(
                            monitor.ScaleDirection.DECREASE,
                            monitor.ComparisonOperationType.LESS_THAN,
                            scaling.scale_in_percent,
                            SCALE_IN_WINDOW,
                        ),
                    ],
                )
            ],
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
