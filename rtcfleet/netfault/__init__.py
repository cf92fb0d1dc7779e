"""Network faults on one machine: hosts in namespaces on a bridge, and drops between them."""

from rtcfleet.netfault.fabric import Fabric, FabricError, Host, leftovers, missing_tools
from rtcfleet.netfault.faults import Blackhole, Fault, Loss, Partition

__all__ = [
    "Blackhole",
    "Fabric",
    "FabricError",
    "Fault",
    "Host",
    "Loss",
    "Partition",
    "leftovers",
    "missing_tools",
]
