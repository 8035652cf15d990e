"""A TCP proxy on 127.0.0.1 that damages the video payload of RTSP-over-TCP streams on request.

RTSP over TCP interleaves RTP packets with the RTSP messages on one connection: each packet is framed as
'$', a channel byte and a 16-bit big-endian length (RFC 2326, section 10.12). The proxy parses that framing
in the server-to-client direction and, while `corrupting` is set, flips bytes inside RTP payloads of the
even (RTP, not RTCP) channels. Framing, RTP headers and the payload's NAL unit and fragmentation headers stay
intact, so the client keeps its connection and the decoder gets damaged slice data, as after bit errors on a
camera's link.
"""

from __future__ import annotations

import random
import socket
import struct
import threading

from tests.support.relay import LocalRelay

RTP_HEADER_BYTES = 12
# H.265 FU packets start with a 2-byte payload header and a 1-byte FU header; H.264 FU-A needs 2 of them.
KEPT_PAYLOAD_BYTES = 3


class CorruptingProxy(LocalRelay):
    def __init__(self, upstream_port: int, flip_fraction: float = 0.02, seed: int = 7):
        self.flip_fraction = flip_fraction
        self.corrupting = threading.Event()
        self.packets_corrupted = 0
        self._random = random.Random(seed)
        super().__init__(upstream_port)

    def forward_to_client(self, source: socket.socket, target: socket.socket) -> None:
        buffer = bytearray()
        while data := source.recv(65536):
            buffer += data
            while (size := _next_message_size(buffer)) is not None:
                message = buffer[:size]
                del buffer[:size]
                if message[:1] == b"$" and message[1] % 2 == 0 and self.corrupting.is_set():
                    self._damage(message)
                target.sendall(message)

    def _damage(self, message: bytearray) -> None:
        rtp = 4  # offset of the RTP packet after the interleave header
        csrc_count = message[rtp] & 0x0F
        payload = rtp + RTP_HEADER_BYTES + 4 * csrc_count
        if message[rtp] & 0x10 and len(message) >= payload + 4:  # header extension present
            payload += 4 + 4 * struct.unpack_from("!H", message, payload + 2)[0]
        start = payload + KEPT_PAYLOAD_BYTES
        if start >= len(message):
            return
        flips = max(1, int((len(message) - start) * self.flip_fraction))
        for _ in range(flips):
            message[self._random.randrange(start, len(message))] ^= 0xFF
        self.packets_corrupted += 1


def _next_message_size(buffer: bytearray) -> int | None:
    """Return the size of the complete message at the start of `buffer`, or None while it is incomplete."""
    if not buffer:
        return None
    if buffer[:1] == b"$":
        if len(buffer) < 4:
            return None
        size = 4 + struct.unpack_from("!H", buffer, 2)[0]
        return size if len(buffer) >= size else None
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    size = end + 4
    for line in bytes(buffer[:end]).split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            size += int(value.strip())
    return size if len(buffer) >= size else None

