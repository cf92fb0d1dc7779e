"""VP8 in RTP (RFC 7741): what the SFU reads of a VP8 payload without decoding it."""

from __future__ import annotations


def keyframe_start(payload: bytes) -> bool:
    """True if `payload` (an RTP VP8 payload) starts a VP8 key frame: forwarding to a new
    subscriber, or after a publisher change, may start only there."""
    if not payload:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit, partition index 0
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) <= pos:
            return False
        ext = payload[pos]
        pos += 1
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    if len(payload) <= pos:
        return False
    return not payload[pos] & 0x01  # P bit of the VP8 frame header: 0 means key frame
