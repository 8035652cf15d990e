"""Repeats of one plate or one person on one camera, which a tracker that loses and finds an object again
turns into several tracks."""

from __future__ import annotations

from collections.abc import Hashable

# Keys kept before the expired ones are dropped, so the memory stays bounded on a busy camera.
PRUNE_ABOVE_KEYS = 256


class RecentKeys:
    """The frame time at which each key, such as a plate text, was last seen on one camera."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._last_seen_s: dict[Hashable, float] = {}

    def seen_recently(self, key: Hashable, now_s: float) -> bool:
        """Return whether `key` was seen less than window_s before `now_s`, and record `now_s` for it.

        Each sighting restarts the window, so an object that stays in view for minutes while its tracks
        break up is reported once. A window of 0 reports every sighting.
        """
        last_s = self._last_seen_s.get(key)
        self._last_seen_s[key] = now_s if last_s is None else max(last_s, now_s)
        if len(self._last_seen_s) > PRUNE_ABOVE_KEYS:
            self._last_seen_s = {k: t for k, t in self._last_seen_s.items() if now_s - t < self.window_s}
        return last_s is not None and now_s - last_s < self.window_s
