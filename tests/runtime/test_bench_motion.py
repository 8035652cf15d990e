"""`edge bench motion` on a short scene: gating cuts detector calls on the still parts, not in the passage."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import PEOPLE_CLIP, edge_command


def test_bench_motion_json():
    # A 10 s scene: still corridor, then from 4 s the person walking in view (source 8..13 s), then still.
    result = subprocess.run([*edge_command(), "bench", "motion", "--source", str(PEOPLE_CLIP), "--seconds", "10",
                             "--passage-from", "8", "--passage-s", "4", "--keepalive-interval-s", "3", "--json"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    ungated, gated = report["sides"]
    assert report["frames_admitted"] == 100
    assert ungated["detector_calls"] == 100
    assert gated["detector_calls"] < ungated["detector_calls"]
    # Of the 60 still frames, only the first, a keep-alive every 3 s and the frames right after the passage
    # (while the background takes in its last frame) go to the detector.
    assert gated["reasons"]["gated"] >= 30
    assert gated["static_calls"] < ungated["static_calls"]
    assert gated["reasons"]["keepalive"] >= 1
    # Gating lets the passage through: nearly every frame in which the ungated side found something.
    assert gated["passage_frames_with_detections"] >= ungated["passage_frames_with_detections"] - 2
    assert ungated["passage_frames_with_detections"] >= 30
    assert report["measure_cpu_us_median"] > 0


def test_bench_motion_rejects_bad_source(tmp_path):
    not_video = tmp_path / "not-a-video.mp4"
    not_video.write_bytes(b"no video here" * 100)
    result = subprocess.run([*edge_command(), "bench", "motion", "--source", str(not_video)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "cannot open" in result.stderr
