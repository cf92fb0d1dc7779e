"""Region-failover drills: one driver, one sequence, a backend per target."""

from rtcfleet.drill.backend import DrillBackend
from rtcfleet.drill.driver import DrillReport, DrillSpec, run_region_outage

__all__ = ["DrillBackend", "DrillReport", "DrillSpec", "run_region_outage"]
