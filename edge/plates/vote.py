"""Combine the plate reads of one vehicle track into one plate, character by character."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass

import numpy as np

from edge.plates.grammar import check_plate
from edge.plates.stage import PlateResult

NEW_ENERGY_LENGTH = 8


@dataclass(frozen=True)
class PlateObservation:
    """A read plate together with the frame and vehicle it came from."""

    result: PlateResult
    frame_bgr: np.ndarray
    frame_time_utc: float
    vehicle_box_xyxy: np.ndarray
    vehicle_class: str


@dataclass(frozen=True)
class PlateVote:
    """The plate of a track after voting."""

    text: str
    plate_type: str
    colour: str | None
    confidence: float  # minimum over characters of the winning character's share of the vote, 0..1
    reads: int  # valid reads of the winning length
    best: PlateObservation  # the read closest to the voted text, for snapshots


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two plate texts."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def _mean_prob(observation: PlateObservation) -> float:
    probs = observation.result.read.char_probs
    return float(np.mean(probs)) if probs else 0.0


def vote_colour(observations: list[PlateObservation]) -> str | None:
    weights: dict[str, float] = defaultdict(float)
    for observation in observations:
        if observation.result.read.colour:
            weights[observation.result.read.colour] += observation.result.read.colour_score
    return max(weights, key=weights.get) if weights else None


def vote_plate(observations: list[PlateObservation]) -> PlateVote | None:
    """Vote per character over the valid reads of the most supported length; None when nothing valid was read.

    Each read adds its character probability to the character it read at each position. A green plate is
    a new-energy plate, so only 8-character reads count for it: a green track with only 7-character
    reads gives no plate rather than a wrong one.
    """
    valid = [o for o in observations if o.result.valid]
    # The green rule looks at every read, because the colour of a read with a lost character is still right.
    if vote_colour(observations) == "green":
        valid = [o for o in valid if len(o.result.text) == NEW_ENERGY_LENGTH]
    if not valid:
        return None

    length_weights: Counter[int] = Counter()
    for observation in valid:
        length_weights[len(observation.result.text)] += _mean_prob(observation)
    length = length_weights.most_common(1)[0][0]
    group = [o for o in valid if len(o.result.text) == length]
    # Reads whose colour contradicts their text are invalid, so the group's colours agree with the text.
    colour = vote_colour(group)

    characters, shares = [], []
    for position in range(length):
        weights: dict[str, float] = defaultdict(float)
        for observation in group:
            probs = observation.result.read.char_probs
            weight = probs[position] if position < len(probs) else 0.0
            weights[observation.result.text[position]] += weight
        winner = max(weights, key=weights.get)
        characters.append(winner)
        shares.append(weights[winner] / len(group))
    text = "".join(characters)

    check = check_plate(text, shares, colour)
    if not check.valid:
        # Mixing characters from different reads can break the grammar; fall back to the strongest read.
        strongest = max(group, key=_mean_prob)
        text, check = strongest.result.text, strongest.result.check
        shares = list(strongest.result.read.char_probs)
    best = max(group, key=lambda o: (o.result.text == text, _mean_prob(o)))
    return PlateVote(text=check.text, plate_type=check.plate_type or "", colour=colour,
                     confidence=float(min(shares)), reads=len(group), best=best)


class TrackVotes:
    """The most recent reads of one track, bounded in number."""

    def __init__(self, max_reads: int):
        self.observations: deque[PlateObservation] = deque(maxlen=max_reads)

    def add(self, observation: PlateObservation) -> None:
        self.observations.append(observation)

    def vote(self) -> PlateVote | None:
        return vote_plate(list(self.observations))
