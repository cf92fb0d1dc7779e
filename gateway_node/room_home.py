"""Which region may decide about a room while regions cannot see each other.

Two regions that cannot reach each other, while clients reach both, must never both host a
room. Asking the other region first (``Gateway.find_remote``) is not enough: an unanswered
question looks the same whether the other region is dead or only cut off. So every room has a
home region, derived from its name alone (every gateway computes the same one), and the home
holds the room's reservation:

- a region that places a new room asks every other region; the home answers "not here" only
  after recording, atomically in its own Redis, that the asking region now holds the room;
- the home itself refuses to create a room reserved by another region unless that region
  says the room is no longer live there;
- a region that cannot reach the room's home (or the region holding the room's reservation)
  does not create the room: it sends the client there, unless the client says that it cannot
  reach that region either (``Join.unreachable_regions``): then the region is down for
  everyone we can hear from, and the room is taken over.

Under a partition, then, a new room lands on the home's side only, and a live room is only
ever joined where it lives. The price: while a room's home is cut off from a client's region,
that client is redirected to the home; and a region outage costs clients who did not see it
(they were not in the dead region) one failed connect before the takeover.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from rtcfleet import bus

# long enough to outlive any room; a stale reservation is cleared when its holder says the
# room is gone, so nothing refreshes it
RESERVATION_TTL_S = 24 * 3600


def room_home(room: str, regions: Iterable[str]) -> str:
    """The home region of ``room`` among ``regions`` (order does not matter)."""
    ordered = sorted(set(regions))
    if not ordered:
        raise ValueError("no regions")
    digest = hashlib.sha256(room.encode()).digest()
    return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]


def reservation_key(room: str) -> str:
    return f"{bus.PREFIX}room-region:{room}"
