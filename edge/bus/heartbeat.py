"""ZMTP heartbeats for the feed and replay sockets, so that a peer that vanished without closing its TCP
connection (a powered-off box, a cut cable) is disconnected and its queue freed."""

from __future__ import annotations

from dataclasses import dataclass

import zmq


@dataclass(frozen=True)
class Heartbeat:
    """ZMTP heartbeat timing of one socket, in seconds (libzmq 4.2 or later)."""

    interval_s: float = 5.0  # a PING goes to every peer this often
    timeout_s: float = 15.0  # a peer that sends nothing for this long after a PING is disconnected
    # Sent to the peer in each PING: the peer drops the connection when it hears nothing for this long.
    # libzmq keeps it in tenths of a second, so the most it can carry is 6553 s.
    ttl_s: float = 30.0

    def apply(self, socket: zmq.Socket) -> None:
        socket.setsockopt(zmq.HEARTBEAT_IVL, round(self.interval_s * 1000))
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, round(self.timeout_s * 1000))
        socket.setsockopt(zmq.HEARTBEAT_TTL, round(self.ttl_s * 1000))
