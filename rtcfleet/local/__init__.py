"""The local fleet: the platform on one machine, for trying it and for drills without a cloud."""

from rtcfleet.local.fleet import FleetNotReady, LocalFleet
from rtcfleet.local.topology import FleetSpec

__all__ = ["FleetNotReady", "FleetSpec", "LocalFleet"]
