"""`edge bench decode` on a real clip: the cases decode the frames their mode promises. Speed is never asserted."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import CAR_CLIP, edge_command


def test_bench_decode_json_cases():
    result = subprocess.run(edge_command() + ["bench", "decode", "--source", str(CAR_CLIP), "--seconds", "10",
                                              "--repeats", "1", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["clip"]["gop"] == 60
    assert report["clip"]["reencoded_from"] is None
    cases = {case["label"]: case for case in report["cases"]}
    # 10 s of the 12.5 fps clip: 125 frames, key frames at 0, 60 and 120.
    assert cases["all"]["frames_decoded"] == 125
    assert cases["all"]["frames_converted"] == 125
    assert cases["all, max_fps 5"]["frames_converted"] == 50
    assert cases["keyframes"]["frames_decoded"] == 3
    assert cases["all, BGR 416 px wide"]["frames_converted"] == 125
    assert cases["all"]["all_over_this"] == 1.0


def test_bench_decode_rejects_missing_file(tmp_path):
    result = subprocess.run(edge_command() + ["bench", "decode", "--source", str(tmp_path / "none.mp4")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "bench failed: cannot open" in result.stderr
    assert "Errno" not in result.stderr


def test_bench_decode_invalid_file_explained(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    result = subprocess.run(edge_command() + ["bench", "decode", "--source", str(junk)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"bench failed: cannot open {junk}: Invalid data found when processing input" in result.stderr
    assert "Errno" not in result.stderr


def test_bench_decode_rejects_width_not_reduced():
    result = subprocess.run(edge_command() + ["bench", "decode", "--source", str(CAR_CLIP), "--reduced-width",
                                              "768"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert ("bench failed: --reduced-width 768 is not below the frame width of car-detection.mp4 (768 px)"
            in result.stderr)
    assert "give a width under 768" in result.stderr


def test_bench_decode_rejects_seconds_under_gop():
    # The clip has a key frame every 60 frames at 12.5 fps, every 4.8 s.
    result = subprocess.run(edge_command() + ["bench", "decode", "--source", str(CAR_CLIP), "--seconds", "0.01"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "bench failed: --seconds 0.01 is shorter than one key-frame interval of car-detection.mp4" in result.stderr
    assert "use --seconds 4.8 or more" in result.stderr


def test_bench_decode_drains_reordered_frames():
    """The re-encoded clip has B-frames, so its decoder buffers the key frames of a short window until drained."""
    result = subprocess.run(edge_command() + ["bench", "decode", "--source", str(CAR_CLIP), "--reencode", "640x360",
                                              "--seconds", "5", "--repeats", "1", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cases = {case["label"]: case for case in json.loads(result.stdout)["cases"]}
    # 5 s at 12.5 fps with a key frame every 50 frames: key frames at 0 and 4 s.
    assert cases["keyframes"]["frames_decoded"] == 2
    assert cases["all"]["frames_decoded"] == 63
