"""rtcfleet: deploy and run a multi-region, highly available WebRTC platform."""

__version__ = "0.1.0"
