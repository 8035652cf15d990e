"""Read the feed: used by `edge subscribe` and by integrators' tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import zmq

from edge.bus.schema import decode_header


@dataclass(frozen=True)
class FeedMessage:
    topic: str
    header: dict
    images: list[bytes]  # JPEG parts after the header: the frame snapshot first, then any crops

    @property
    def jpeg(self) -> bytes | None:
        """The frame snapshot, when the message carries one."""
        return self.images[0] if self.images else None


def subscribe(endpoint: str, topics: list[str], timeout_s: float | None = None,
              context: zmq.Context | None = None) -> Iterator[FeedMessage]:
    """Yield messages whose topic starts with one of `topics` (all when empty).

    Stops once `timeout_s` passes with no message; runs until closed when `timeout_s` is None.
    """
    context = context or zmq.Context.instance()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    for topic in topics or [""]:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
    socket.connect(endpoint)
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    try:
        while True:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not poller.poll(wait_ms):
                return
            frames = socket.recv_multipart()
            yield FeedMessage(
                topic=frames[0].decode("utf-8"),
                header=decode_header(frames[1]),
                images=frames[2:],
            )
    finally:
        socket.close()
