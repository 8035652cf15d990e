"""Per-track plate voting: character votes weighted by probability, and no 7-character green plates."""

from __future__ import annotations

import numpy as np
import pytest

from edge.plates.grammar import check_plate
from edge.plates.recognizer import PlateRead
from edge.plates.stage import PlateResult
from edge.plates.vote import PlateObservation, TrackVotes, vote_plate

FRAME = np.zeros((8, 8, 3), dtype=np.uint8)


def observation(text: str, prob: float = 0.9, colour: str = "blue", probs: list[float] | None = None,
                frame_time_s: float = 0.0):
    char_probs = tuple(probs if probs is not None else [prob] * len(text))
    read = PlateRead(text=text, char_probs=char_probs, colour=colour, colour_score=0.9)
    result = PlateResult(0, np.zeros((4, 2), dtype=np.float32), 0.9, False, read,
                         check_plate(text, char_probs, colour), FRAME)
    return PlateObservation(result, FRAME, frame_time_s, np.zeros(4, dtype=np.float32), "car")


def test_agreeing_reads_give_full_confidence():
    vote = vote_plate([observation("苏A12345")] * 3)
    assert vote.text == "苏A12345"
    assert vote.reads == 3
    assert vote.confidence == pytest.approx(0.9)


def test_character_vote_outweighs_one_bad_read():
    vote = vote_plate([observation("苏A12345"), observation("苏A12845"), observation("苏A12345")])
    assert vote.text == "苏A12345"
    assert vote.confidence == pytest.approx(0.6)  # position 5: 2 of 3 reads at 0.9


def test_confident_character_wins_over_unsure_ones():
    unsure = [0.9, 0.9, 0.9, 0.9, 0.3, 0.9, 0.9]
    vote = vote_plate([observation("苏A12345", probs=unsure), observation("苏A12345", probs=unsure),
                       observation("苏A12845", prob=0.95)])
    assert vote.text == "苏A12845"


def test_green_plate_never_seven_characters():
    reads = [observation("苏BD7321", colour="green"), observation("苏BD7321", colour="green")]
    assert vote_plate(reads) is None


def test_green_plate_keeps_eight_character_reads():
    reads = [observation("苏BD7321", colour="green")] * 3 + [observation("苏BD73215", colour="green")]
    vote = vote_plate(reads)
    assert vote.text == "苏BD73215"
    assert len(vote.text) == 8
    assert vote.plate_type == "new_energy_small"


def test_invalid_reads_are_ignored():
    assert vote_plate([observation("XX12"), observation("苏A1")]) is None


def test_colour_is_voted():
    reads = [observation("皖K66666", colour="yellow")] * 2 + [observation("皖K66666", colour="blue")]
    assert vote_plate(reads).colour == "yellow"


def test_track_votes_bounded():
    votes = TrackVotes(max_reads=5)
    for _ in range(20):
        votes.add(observation("苏A12345"))
    assert len(votes.observations) == 5


def test_colour_comes_from_winning_reads():
    reads = [observation("苏ED51712", colour="green")] * 3 + [observation("苏ED51712", colour="black")] * 4
    vote = vote_plate(reads)
    assert vote.colour == "green"
    assert vote.text == "苏ED51712"


def plate_builder():
    from edge.config.pipeline import PlateStage
    from edge.events.plates import PlateEventBuilder

    stage = PlateStage(detector="d", recognizer="r", min_reads=3, min_confidence=0.6, recheck_every_frames=5)
    return PlateEventBuilder(stage, lambda text: [], jpeg_quality=80)


def test_following_vehicle_on_same_track_published():
    """A car that takes over the track of the car before it (gate cameras) still gets its own plate message."""
    events = plate_builder()
    first = events.on_frame("cam", {4: [observation("苏A12345")] * 3}, [])
    same = events.on_frame("cam", {4: [observation("苏A12345")] * 3}, [])
    following = events.on_frame("cam", {4: [observation("皖K66666", colour="yellow")] * 3}, [])
    assert [e.body["plate"]["text"] for e in first] == ["苏A12345"]
    assert same == []
    assert [e.body["plate"]["text"] for e in following] == ["皖K66666"]


def test_one_character_difference_is_same_plate():
    events = plate_builder()
    events.on_frame("cam", {4: [observation("苏A12345")] * 3}, [])
    assert events.on_frame("cam", {4: [observation("苏A12346")] * 3}, []) == []


def test_broken_track_sends_no_repeat():
    # The tracker lost the car in the dark and started tracks 5 and 6 for it, 3 and 9 s after track 4's plate.
    events = plate_builder()
    first = events.on_frame("cam", {4: [observation("鄂F8888警", colour="white", frame_time_s=100.0)] * 3}, [])
    second = events.on_frame("cam", {5: [observation("鄂F8888警", colour="white", frame_time_s=103.0)] * 3}, [4])
    third = events.on_frame("cam", {6: [observation("鄂F8888警", colour="white", frame_time_s=109.0)] * 3}, [5])
    other_plate = events.on_frame("cam", {7: [observation("苏A12345", frame_time_s=110.0)] * 3}, [6])

    assert [e.body["plate"]["text"] for e in first] == ["鄂F8888警"]
    assert second == []
    assert third == []
    assert events.repeats_suppressed == 2
    assert [e.body["plate"]["text"] for e in other_plate] == ["苏A12345"]


def test_plate_marked_unsettled_at_track_end():
    events = plate_builder()
    # One read: below min_reads, so the plate goes out only when the track ends, marked as not settled.
    assert events.on_frame("cam", {4: [observation("苏A12345", frame_time_s=100.0)]}, []) == []
    (ended,) = events.on_frame("cam", {}, [4])
    (settled,) = events.on_frame("cam", {5: [observation("皖K66666", colour="yellow", frame_time_s=130.0)] * 3}, [])

    assert ended.body["plate"]["settled"] is False
    assert settled.body["plate"]["settled"] is True


def test_plate_sent_again_after_repeat_window():
    events = plate_builder()
    events.on_frame("cam", {4: [observation("苏A12345", frame_time_s=100.0)] * 3}, [])
    # The same car passes again after 16 s out of view.
    again = events.on_frame("cam", {9: [observation("苏A12345", frame_time_s=116.0)] * 3}, [4])
    assert [e.body["plate"]["text"] for e in again] == ["苏A12345"]


def test_published_track_read_only_on_recheck_frames():
    events = plate_builder()
    events.on_frame("cam", {4: [observation("苏A12345")] * 3}, [])
    assert events.should_read("cam", 4, frame_index=10)
    assert not events.should_read("cam", 4, frame_index=11)
    assert events.should_read("cam", 5, frame_index=11)
