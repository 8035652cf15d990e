"""A feed message built by an event builder, before the publisher numbers and sends it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeedEvent:
    topic: str
    body: dict
    images: list[bytes]  # JPEG frame snapshot first, then any crops
