"""`edge bench motion` on a short scene: gating cuts detector calls on the still parts, not in the passage."""

from __future__ import annotations

import json
import subprocess

from edge.runtime.bench_motion import BenchResult, SceneLayout, SideResult, calls_ratio, format_table
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


def test_motion_ratio_needs_gated_calls():
    assert calls_ratio(100, 40) == 2.5
    assert calls_ratio(0, 0) is None
    assert calls_ratio(60, 0) is None

    layout = SceneLayout(seconds=2.0, fps=25.0, passage_start_s=0.0, passage_s=2.0, source_from_s=8.0)
    ungated = SideResult("without gating", detector_calls=20, passage_calls=20)
    gated = SideResult("with gating", detector_calls=20, passage_calls=20)
    result = BenchResult(source="scene.mp4", layout=layout, max_fps=10.0, motion_threshold=0.002,
                         keepalive_interval_s=10.0, frames_decoded=50, frames_admitted=20, passage_frames=20,
                         sides=[ungated, gated], calls_ratio=calls_ratio(20, 20),
                         static_calls_ratio=calls_ratio(0, 0), measure_cpu_us_median=50.0,
                         measure_cpu_us_p95=80.0, detector_wall_ms_median=20.0, frame_width=768, frame_height=432)
    table = format_table(result)
    assert "1.00x overall" in table
    assert "not measured on the still parts, because the scene has none" in table
    assert "0.00x" not in table

    ungated.static_calls, gated.detector_calls = 60, 20
    result.static_calls_ratio = calls_ratio(60, 0)
    assert "because gating sent none of their 60 frames to the detector" in format_table(result)


def test_bench_motion_names_invalid_options():
    result = subprocess.run([*edge_command(), "bench", "motion", "--source", str(PEOPLE_CLIP), "--max-fps", "0",
                             "--motion-threshold", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert ("bench failed: invalid --max-fps 0: expected a number above 0 and at most 60, the range of the "
            "camera's max_fps") in lines
    assert ("bench failed: invalid --motion-threshold 2: expected a number at least 0.0001 and at most 0.5, the "
            "range of the camera's motion_threshold") in lines
    assert "validation error" not in result.stderr
    assert "pydantic" not in result.stderr


def test_bench_motion_keepalive_against_rate():
    result = subprocess.run([*edge_command(), "bench", "motion", "--source", str(PEOPLE_CLIP), "--max-fps", "1",
                             "--keepalive-interval-s", "0.5"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("bench failed: invalid --keepalive-interval-s 0.5 with --max-fps 1: "
                                    "keepalive_interval_s (0.5) must be longer than the frame interval")
    assert len(result.stderr.splitlines()) == 1
