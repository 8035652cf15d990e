"""Camera names for the pages: the daemons send each camera's configured name in their health messages."""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.web.store import HitStore

# How long names are reused before the store is read again; a renamed camera shows up within this time.
REFRESH_S = 10.0


class CameraNames:
    def __init__(self, store: HitStore, clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._clock = clock
        self._names: dict[tuple[str, str], str] = {}
        self._read_at = float("-inf")

    def label(self, publisher_id: str, camera_id: str) -> str:
        """Return "name (id)" when the camera's daemon has sent its name, else the id alone."""
        if self._clock() - self._read_at > REFRESH_S:
            # One small indexed read every REFRESH_S, so calling this from the event loop is cheap.
            self._names = {(status.publisher_id, status.camera_id): status.camera_name
                           for status in self._store.camera_status() if status.camera_name}
            self._read_at = self._clock()
        name = self._names.get((publisher_id, camera_id))
        return f"{name} ({camera_id})" if name else camera_id
