"""Which codecs the SFU negotiates: a forwarded stream must use the same codec on both legs."""

from __future__ import annotations

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability


class CodecNotAllowed(ValueError):
    """The remote description offers no codec the SFU allows for a media section."""


def codec_preferences(kind: str, allowed: tuple[str, ...]) -> list[RTCRtpCodecCapability]:
    """aiortc capabilities of `kind` whose mime subtype is allowed, in the allowed order, plus
    RTX so that lost video packets can be retransmitted on both legs."""
    names = [name.lower() for name in allowed]
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for name in names for c in capabilities if c.mimeType.split("/")[1].lower() == name]
    if chosen and kind == "video":
        chosen += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    return chosen
