"""Read the feed: used by `edge subscribe` and by integrators' tests."""

from __future__ import annotations

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


def open_subscriber(context: zmq.Context, endpoint: str, topics: list[str], receive_hwm: int | None = None
                    ) -> zmq.Socket:
    """Return a SUB socket connected to `endpoint` for the topic prefixes `topics` (all when empty).

    `receive_hwm` sets ZMQ_RCVHWM, the number of messages kept before later ones are dropped; 0 means no limit.
    """
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    if receive_hwm is not None:
        socket.setsockopt(zmq.RCVHWM, receive_hwm)
    for topic in topics or [""]:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
    socket.connect(endpoint)
    return socket


def receive_message(socket: zmq.Socket) -> FeedMessage:
    frames = socket.recv_multipart()
    return FeedMessage(topic=frames[0].decode("utf-8"), header=decode_header(frames[1]), images=frames[2:])


def subscribe(endpoint: str, topics: list[str], timeout_s: float | None = None,
              context: zmq.Context | None = None) -> Iterator[FeedMessage]:
    """Yield messages whose topic starts with one of `topics` (all when empty).

    Stops once `timeout_s` passes with no message; runs until closed when `timeout_s` is None.
    """
    socket = open_subscriber(context or zmq.Context.instance(), endpoint, topics)
    try:
        while True:
            if not socket.poll(None if timeout_s is None else int(timeout_s * 1000), zmq.POLLIN):
                return
            yield receive_message(socket)
    finally:
        socket.close()
