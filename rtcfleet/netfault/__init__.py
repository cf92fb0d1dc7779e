"""Network faults on one machine: hosts in namespaces on a bridge, drops between them, and
delay, jitter and loss on one host's path through a userspace relay."""

from rtcfleet.netfault.fabric import Fabric, FabricError, Host, leftovers, missing_tools
from rtcfleet.netfault.faults import Blackhole, Fault, Loss, Partition
from rtcfleet.netfault.relay import Impairment

__all__ = [
    "Blackhole",
    "Fabric",
    "FabricError",
    "Fault",
    "Host",
    "Impairment",
    "Loss",
    "Partition",
    "leftovers",
    "missing_tools",
]
