"""A room: its participants, their published tracks, and who receives what."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiortc.exceptions import InvalidStateError

from media_node.datagram_batch import Account
from media_node.ice import IcePolicy
from media_node.publisher import PublishedTrack, Publisher, PublishNotAllowed
from media_node.subscriber import Subscriber, SubscriberNotNegotiating

logger = logging.getLogger(__name__)

Emit = Callable[[str, str, dict[str, Any]], None]


class UnknownParticipant(LookupError):
    """The participant has not joined the room (or has left it)."""


class SubscribeNotAllowed(PermissionError):
    """The participant has no grant to subscribe."""


class RoomClosed(RuntimeError):
    """The room was closed."""


@dataclass
class Participant:
    name: str
    can_publish: bool
    can_subscribe: bool
    publisher: Publisher | None = None
    subscriber: Subscriber | None = None


class Room:
    def __init__(
        self,
        name: str,
        ice: IcePolicy,
        allowed_codecs: Callable[[], tuple[str, ...]],
        remb_cap: Callable[[], int],
        emit: Emit,
        on_sent: Account,
    ) -> None:
        self.name = name
        self.participants: dict[str, Participant] = {}
        self.closed = False
        self._ice = ice
        self._allowed = allowed_codecs
        self._remb_cap = remb_cap
        self._emit = emit
        self._on_sent = on_sent
        self._tasks: set[asyncio.Task[None]] = set()

    def tracks(self) -> list[PublishedTrack]:
        return [
            track
            for p in self.participants.values()
            if p.publisher is not None
            for track in p.publisher.tracks.values()
        ]

    @property
    def forwarded_streams(self) -> int:
        return sum(
            p.subscriber.forwarded_streams
            for p in self.participants.values()
            if p.subscriber is not None
        )

    async def join(self, name: str, *, can_publish: bool, can_subscribe: bool) -> None:
        self._check_open()
        if name in self.participants:
            await self.leave(name)
        participant = Participant(name, can_publish, can_subscribe)
        self.participants[name] = participant
        if can_subscribe:
            participant.subscriber = Subscriber(
                name,
                self._ice,
                self._allowed(),
                on_offer=lambda sdp: self._emit(name, "subscriber_offer", {"sdp": sdp}),
                on_sent=self._on_sent,
            )
            for track in self.tracks():
                if track.publisher != name:
                    await participant.subscriber.add_track(track)

    async def publish_offer(self, name: str, sdp: str) -> str:
        participant = self._participant(name)
        if not participant.can_publish:
            raise PublishNotAllowed(f"{name} may not publish in {self.name}")
        stale = participant.publisher
        if stale is not None and stale.pc.signalingState == "closed":
            # its client closed that connection (aiortc then closes ours) to start over: a
            # new offer is a new connection, as after an offer that failed
            participant.publisher = None
            await self._unpublish(stale)
            await stale.close()  # its feedback loop ends with it
        if participant.publisher is None:
            participant.publisher = Publisher(
                name,
                self._ice,
                self._allowed(),
                self._remb_cap,
                on_closed=lambda publisher: self._spawn(self._publisher_closed(publisher)),
            )
        publisher = participant.publisher
        try:
            answer, published = await publisher.answer(sdp)
        except BaseException:
            # a failed offer leaves the connection half-negotiated (transceivers added, no
            # description): drop it, so the next offer starts on a clean connection
            participant.publisher = None
            await self._unpublish(publisher)
            await publisher.close()
            raise
        for track in published:
            self._emit(
                name,
                "track_published",
                {"publisher": name, "kind": track.kind, "track_id": track.track_id},
            )
            await self._offer_to_subscribers(track, add=True, exclude=name)
        return answer

    async def subscriber_answer(self, name: str, sdp: str) -> None:
        subscriber = self._subscriber(name)
        try:
            await subscriber.apply_answer(sdp)
        except InvalidStateError as exc:
            if subscriber.pc.signalingState != "closed":
                raise
            # its client closed the connection while the answer was applied (to rejoin): no
            # offer is outstanding on it any more, as for any answer that came too late
            raise SubscriberNotNegotiating(f"{name}: subscriber connection closed") from exc

    async def add_ice_candidate(
        self,
        name: str,
        target: Literal["publisher", "subscriber"],
        candidate: dict[str, Any] | None,
    ) -> None:
        participant = self._participant(name)
        if target == "publisher":
            if participant.publisher is None:
                raise PublishNotAllowed(f"{name} has no publisher connection")
            await participant.publisher.add_ice_candidate(candidate)
        else:
            await self._subscriber(name).add_ice_candidate(candidate)

    async def leave(self, name: str) -> None:
        participant = self.participants.pop(name, None)
        if participant is None:
            raise UnknownParticipant(f"{name} is not in {self.name}")
        if participant.publisher is not None:
            await self._unpublish(participant.publisher)
            await participant.publisher.close()
        if participant.subscriber is not None:
            await participant.subscriber.close()
        self._emit(name, "participant_left", {})

    async def close(self) -> None:
        for name in list(self.participants):
            await self.leave(name)
        self.closed = True
        for task in list(self._tasks):
            task.cancel()

    async def apply_bitrate_cap(self) -> None:
        for participant in self.participants.values():
            if participant.publisher is not None:
                await participant.publisher.apply_bitrate_cap()

    async def _unpublish(self, publisher: Publisher) -> None:
        for track in list(publisher.tracks.values()):
            await self._offer_to_subscribers(track, add=False)
            self._emit(
                publisher.participant,
                "track_unpublished",
                {
                    "publisher": publisher.participant,
                    "kind": track.kind,
                    "track_id": track.track_id,
                },
            )
        publisher.tracks.clear()

    async def _offer_to_subscribers(
        self, track: PublishedTrack, *, add: bool, exclude: str | None = None
    ) -> None:
        """Add ``track`` to (or remove it from) every subscriber connection but ``exclude``'s.
        One that cannot take the change must not stop the others, nor the publish or leave
        that caused it: a connection its client closed (aiortc then closes ours) negotiates
        nothing more until its participant joins again; a failure of any other kind is logged."""
        for other in list(self.participants.values()):
            subscriber = other.subscriber
            if other.name == exclude or subscriber is None:
                continue
            try:
                await (subscriber.add_track(track) if add else subscriber.remove_track(track))
            except InvalidStateError as exc:
                logger.info("%s: subscriber connection not renegotiated: %s", other.name, exc)
            except Exception:
                logger.exception("%s: subscriber connection not renegotiated", other.name)

    async def _publisher_closed(self, publisher: Publisher) -> None:
        participant = self.participants.get(publisher.participant)
        if participant is not None and participant.publisher is publisher:
            await self._unpublish(publisher)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _participant(self, name: str) -> Participant:
        self._check_open()
        participant = self.participants.get(name)
        if participant is None:
            raise UnknownParticipant(f"{name} is not in {self.name}")
        return participant

    def _subscriber(self, name: str) -> Subscriber:
        participant = self._participant(name)
        if participant.subscriber is None:
            raise SubscribeNotAllowed(f"{name} may not subscribe in {self.name}")
        return participant.subscriber

    def _check_open(self) -> None:
        if self.closed:
            raise RoomClosed(self.name)
