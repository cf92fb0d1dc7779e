"""The local fleet: the platform on one machine, for trying it and for drills without a cloud."""

from rtcfleet.local.fleet import FleetNotReady, FleetSpec, LocalFleet

__all__ = ["FleetNotReady", "FleetSpec", "LocalFleet"]
