"""Every stack output's name, declared once.

A stack's outputs are a contract between the program that exports them and whoever reads
them: another stack through a ``StackReference``, the offline plan, recorded outputs in
``stacks/offline-outputs/``, the operators' tools. Producers and readers import these names;
a renamed output is a change here that both sides see.
"""

from __future__ import annotations

# every region stack, either cloud:
REGION = "region"
CLIENT_LB_DNS_NAME = "clientLbDnsName"
POSTGRES_WRITE_ENDPOINT = "postgresWriteEndpoint"
POSTGRES_READ_ENDPOINT = "postgresReadEndpoint"
# the home region's (writer's) database password, read by the regions that replicate it
DB_PASSWORD = "dbPassword"
# the writer's cluster secret, which every region of the environment shares: gateways present
# it to each other's room lookups (read by the regions that replicate or subscribe)
CLUSTER_SECRET = "clusterSecret"
# where other regions' gateways ask this region about a room (its media-signaling LB), and
# the region's own client signaling URL (rtcfleet:signalingUrl) when it has one
ROOM_LOOKUP_URL = "roomLookupUrl"
SIGNALING_URL = "signalingUrl"

# an AWS region stack:
VPC_ID = "vpcId"
VPC_CIDR = "vpcCidr"
PEERED_CIDRS = "peeredCidrs"
PRIVATE_SUBNET_IDS = "privateSubnetIds"
ADMIN_LB_DNS_NAME = "adminLbDnsName"
SIGNALING_LB_DNS_NAME = "signalingLbDnsName"
REDIS_ENDPOINT = "redisEndpoint"
POSTGRES_REPLICA_ARN = "postgresReplicaArn"
GATEWAY_GROUP_NAME = "gatewayGroupName"
MEDIA_GROUP_NAME = "mediaGroupName"
# where the region's media nodes upload recordings
RECORDING_BUCKET = "recordingBucket"
TRANSIT_GATEWAY_ID = "transitGatewayId"
TRANSIT_ROUTE_TABLE_ID = "transitGatewayRouteTableId"
# the home region only
POSTGRES_PRIMARY_ARN = "postgresPrimaryArn"

# an Azure region stack:
LOCATION = "location"
RESOURCE_GROUP_NAME = "resourceGroupName"
VNET_ID = "vnetId"
VNET_CIDR = "vnetCidr"
GATEWAY_SUBNET_ID = "gatewaySubnetId"
ADMIN_LB_ADDRESS = "adminLbAddress"
SIGNALING_ADDRESS = "signalingAddress"
REDIS_HOST = "redisHost"
POSTGRES_REPLICA_ID = "postgresReplicaId"
KEY_VAULT_URI = "keyVaultUri"
GATEWAY_SCALE_SET_ID = "gatewayScaleSetId"
MEDIA_SCALE_SET_ID = "mediaScaleSetId"
# the Spot media scale set (rtcfleet:mediaSpot), and where media nodes upload recordings
MEDIA_SPOT_SCALE_SET_ID = "mediaSpotScaleSetId"
RECORDING_CONTAINER_URL = "recordingContainerUrl"
# the home region only: the writer, and the private DNS zone that names it
POSTGRES_SERVER_ID = "postgresServerId"
POSTGRES_DNS_ZONE_NAME = "postgresDnsZoneName"

# the image stack (``<env>-image``):
IMAGE_IDS = "imageIds"  # AMI id per AWS region
IMAGE_PIPELINE_ARN = "imagePipelineArn"
IMAGE_VERSION_ID = "azureImageVersionId"  # the Compute Gallery image version

# the global stack (``<env>-global``):
HOME_REGION = "homeRegion"
STANDBY_REGION = "standbyRegion"
REGIONS = "regions"
SIGNALING_FQDN = "signalingFqdn"
FALLBACK_FQDN = "fallbackFqdn"
HEALTH_CHECK_IDS = "healthCheckIds"
PRIVATE_LINKS = "privateLinks"

# What the global stack reads from each kind of region stack.
AWS_REGION_OUTPUTS_FOR_PRIVATE_NETWORK = (
    CLIENT_LB_DNS_NAME,
    VPC_CIDR,
    TRANSIT_GATEWAY_ID,
    TRANSIT_ROUTE_TABLE_ID,
)
AZURE_REGION_OUTPUTS = (
    CLIENT_LB_DNS_NAME,
    VNET_ID,
    LOCATION,
    VNET_CIDR,
    GATEWAY_SUBNET_ID,
    RESOURCE_GROUP_NAME,
)
