"""Plate events: one `plate` message per vehicle track, and one `hit.plate` per watchlist entry it matches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from edge.bus.schema import utc_iso
from edge.config.pipeline import PlateStage
from edge.events.feed import FeedEvent
from edge.events.repeats import RecentKeys
from edge.events.snapshot import encode_jpegs
from edge.plates.vote import PlateObservation, PlateVote, TrackVotes, edit_distance

log = logging.getLogger(__name__)

TOPIC_PLATE = "plate"
TOPIC_PLATE_HIT = "hit.plate"


# Plate texts this many edits apart belong to different vehicles, not to one plate read with OCR errors.
DIFFERENT_PLATE_EDITS = 2


@dataclass
class _CameraState:
    recent: RecentKeys  # plate texts published or suppressed as repeats, by frame time
    votes: dict[int, TrackVotes] = field(default_factory=dict)
    published: dict[int, str] = field(default_factory=dict)  # live track -> plate text already published
    # Tracks that ended in the last on_frame call with a plate, sent or held back as a repeat.
    ended_with_plate: set[int] = field(default_factory=set)


def _round_points(points) -> list[list[float]]:
    return [[round(float(x), 1), round(float(y), 1)] for x, y in points]


def plate_body(camera_id: str, track_id: int, vote: PlateVote, settled: bool) -> dict:
    """Return the `plate` message body. `settled` is whether the vote reached min_reads and min_confidence."""
    best = vote.best
    return {
        "camera_id": camera_id,
        "track_id": track_id,
        "frame_time": utc_iso(best.frame_time_utc),
        "plate": {
            "text": vote.text,
            "type": vote.plate_type,
            "colour": vote.colour,
            "confidence": round(vote.confidence, 4),
            "reads": vote.reads,
            "settled": settled,
            "double_row": best.result.double_row,
            "corners_xy": _round_points(best.result.corners_xy),
        },
        "vehicle": {
            "class": best.vehicle_class,
            "box_xyxy": [round(float(v), 1) for v in best.vehicle_box_xyxy],
        },
    }


def watchlist_fields(match) -> dict:
    entry = match.entry
    return {
        "entry_id": entry.id,
        "pattern": entry.pattern,
        "list_name": entry.list_name,
        "reason": entry.reason,
        "max_edits": entry.max_edits,
        "distance": match.distance,
    }


class PlateEventBuilder:
    """Collects reads per (camera, track), decides when a track's plate is settled, and builds its messages.

    A track's plate goes out once: as soon as `min_reads` valid reads agree with `min_confidence`, or when the
    track ends with anything valid read. A published track is read again on every `recheck_every_frames`
    frame. When those reads settle on a clearly different plate, a following vehicle took over the track, so
    its plate goes out as well. A plate that the camera sent within `repeat_window_s` is not sent again.
    """

    def __init__(self, stage: PlateStage, match_watchlist: Callable[[str], list], jpeg_quality: int = 85):
        self.stage = stage
        self.match_watchlist = match_watchlist
        self.jpeg_quality = jpeg_quality
        self._cameras: dict[str, _CameraState] = {}
        self.plates_published = 0
        self.hits_published = 0
        self.repeats_suppressed = 0  # plates not published because the camera published them moments ago

    def ended_with_plate(self, camera_id: str) -> set[int]:
        """Return the tracks that ended in the last on_frame call for the camera with a plate, sent or held back
        as a repeat."""
        state = self._cameras.get(camera_id)
        return state.ended_with_plate if state is not None else set()

    def should_read(self, camera_id: str, track_id: int, frame_index: int) -> bool:
        """True for tracks still voting, and on every recheck_every_frames frame for published ones."""
        state = self._cameras.get(camera_id)
        if state is None or track_id not in state.published:
            return True
        return frame_index % self.stage.recheck_every_frames == 0

    def on_frame(self, camera_id: str, observations: dict[int, list[PlateObservation]],
                 ended_track_ids: list[int]) -> list[FeedEvent]:
        state = self._cameras.get(camera_id)
        if state is None:
            state = self._cameras[camera_id] = _CameraState(RecentKeys(self.stage.repeat_window_s))
        events: list[FeedEvent] = []
        for track_id, track_observations in observations.items():
            votes = state.votes.setdefault(track_id, TrackVotes(self.stage.max_reads_per_track))
            for observation in track_observations:
                votes.add(observation)
            vote = votes.vote()
            if not self._settled(vote):
                continue
            published = state.published.get(track_id)
            if published is None or edit_distance(published, vote.text) >= DIFFERENT_PLATE_EDITS:
                events += self._publish(camera_id, track_id, vote, state, track_observations[-1].frame_time_utc)
            else:
                # Rechecks that agree with the published plate start over, so an old vote never mixes into the
                # next vehicle's. They also show that the plate is still in view.
                state.votes.pop(track_id, None)
                state.recent.seen_recently(published, track_observations[-1].frame_time_utc)
        state.ended_with_plate = set()
        for track_id in ended_track_ids:
            votes = state.votes.pop(track_id, None)
            if track_id not in state.published and votes is not None:
                vote = votes.vote()
                if vote is not None:
                    events += self._publish(camera_id, track_id, vote, state, votes.observations[-1].frame_time_utc)
            if state.published.pop(track_id, None) is not None:
                state.ended_with_plate.add(track_id)
        return events

    def _settled(self, vote: PlateVote | None) -> bool:
        return vote is not None and vote.reads >= self.stage.min_reads and vote.confidence >= self.stage.min_confidence

    def _publish(self, camera_id: str, track_id: int, vote: PlateVote, state: _CameraState,
                 now_s: float) -> list[FeedEvent]:
        state.published[track_id] = vote.text
        state.votes.pop(track_id, None)
        if state.recent.seen_recently(vote.text, now_s):
            self.repeats_suppressed += 1
            log.info("%s: plate %s on track %d not sent again: this camera sent it less than %g s ago", camera_id,
                     vote.text, track_id, self.stage.repeat_window_s)
            return []
        body = plate_body(camera_id, track_id, vote, self._settled(vote))
        images = encode_jpegs([vote.best.frame_bgr, vote.best.result.plate_bgr], self.jpeg_quality)
        events = [FeedEvent(TOPIC_PLATE, body, images)]
        self.plates_published += 1
        for match in self.match_watchlist(vote.text):
            events.append(FeedEvent(TOPIC_PLATE_HIT, {**body, "watchlist": watchlist_fields(match)}, images))
            self.hits_published += 1
            log.info("%s: plate %s on track %d matches watchlist '%s' entry %s", camera_id, vote.text, track_id,
                     match.entry.list_name, match.entry.id)
        return events
