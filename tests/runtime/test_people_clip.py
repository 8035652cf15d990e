"""Content check on the people clip: people are found while they are in view, and not before or after.

The times were checked by eye on the decoded frames. The hall is empty at 0 s, 3 s and 90 s, and one
person is in the middle of the frame at 10 s, 30 s and 60 s.
"""

from __future__ import annotations

import av
import pytest

from edge.config.pipeline import DetectStage
from edge.models.manifest import load_manifest, resolve_file
from edge.runtime.detector import Detector
from tests.conftest import MODEL_DIR, PEOPLE_CLIP

PERSON_IN_VIEW_S = (10.0, 30.0, 60.0)
EMPTY_HALL_S = (0.0, 3.0, 90.0)


@pytest.fixture(scope="module")
def frames_at_times():
    wanted = sorted(PERSON_IN_VIEW_S + EMPTY_HALL_S)
    frames = {}
    with av.open(str(PEOPLE_CLIP)) as container:
        for frame in container.decode(video=0):
            if wanted and frame.time >= wanted[0] - 1e-6:
                frames[wanted.pop(0)] = frame.to_ndarray(format="bgr24")
            if not wanted:
                break
    return frames


@pytest.fixture(scope="module")
def person_detector():
    entry = load_manifest().model("yolox_nano_416")
    stage = DetectStage(model=entry.name, score_threshold=0.25, batch_size=6)
    return Detector(entry, resolve_file(entry, [MODEL_DIR]), stage, ["cpu"])


def people_in(detector: Detector, frame) -> list[float]:
    detections = detector.detect([frame])[0]
    return [float(s) for s, name in zip(detections.scores, detections.class_names()) if name == "person"]


@pytest.mark.parametrize("time_s", PERSON_IN_VIEW_S)
def test_person_found_while_in_view(frames_at_times, person_detector, time_s):
    scores = people_in(person_detector, frames_at_times[time_s])
    assert len(scores) == 1, scores
    assert scores[0] >= 0.5


@pytest.mark.parametrize("time_s", EMPTY_HALL_S)
def test_nobody_found_in_empty_hall(frames_at_times, person_detector, time_s):
    assert people_in(person_detector, frames_at_times[time_s]) == []


def test_whole_set_in_one_batch_matches(frames_at_times, person_detector):
    times = sorted(frames_at_times)
    batched = person_detector.detect([frames_at_times[t] for t in times])
    counts = {t: d.class_names().count("person") for t, d in zip(times, batched)}
    assert counts == {t: (1 if t in PERSON_IN_VIEW_S else 0) for t in times}
