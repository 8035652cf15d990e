"""`edge bench pipeline` and `edge bench latency` run with tiny settings and print valid JSON."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import edge_command


def run_bench(*arguments: str) -> dict:
    completed = subprocess.run([*edge_command(), "--log-level", "WARNING", "bench", *arguments, "--json"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_bench_pipeline_prints_cases_and_ratios():
    report = run_bench("pipeline", "--cameras", "2", "--batch", "2", "--seconds", "0.3", "--repeats", "1")
    assert report["settings"]["cameras"] == 2
    assert report["machine"]["model"] == "yolox_nano_416"
    cases = {(case["kind"], case["workers"], case["threads"], case["batch"]): case for case in report["cases"]}
    for key in [("pipeline", 1, 2, 1), ("pipeline", 1, 2, 2), ("pipeline", 2, 1, 1), ("pipeline", 2, 1, 2)]:
        assert key in cases, f"layout case {key} missing"
    assert any(kind == "bare" for kind, *_ in cases)
    for case in report["cases"]:
        assert len(case["fps_samples"]) == 1
        assert case["fps_median"] > 0, case["label"]
    names = [item["name"] for item in report["ratios"]]
    assert names[0] == "pipeline / bare ONNX Runtime"
    assert len(names) == 5
    assert all(item["ratio"] > 0 for item in report["ratios"])
    assert all(item["paired_ratio"] > 0 for item in report["ratios"])


def test_bench_latency_accounts_for_every_frame():
    report = run_bench("latency", "--cameras", "2", "--seconds", "0.6")
    assert report["settings"]["capacity_fps"] > 0
    loads = report["loads"]
    assert [load["label"] for load in loads] == ["nominal", "2x capacity", "4x capacity"]
    for load in loads:
        assert load["frames_offered"] > 0, load["label"]
        assert load["frames_published"] + load["frames_dropped"] == load["frames_offered"], load["label"]
        assert sorted(load["dropped_per_camera"]) == ["cam-00", "cam-01"]
        assert sum(load["dropped_per_camera"].values()) == load["frames_dropped"]
        assert 0 < load["latency_p50_ms"] <= load["latency_p99_ms"] <= load["latency_max_ms"], load["label"]
        assert load["mean_batch_ms"] > 0, load["label"]
    assert loads[2]["frames_dropped"] > 0, "4 times the capacity should drop frames"
    assert len(report["p99_overload_over_nominal"]) == 2


def test_bench_latency_rejects_invalid_rate():
    completed = subprocess.run([*edge_command(), "bench", "latency", "--fps", "0"], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 2
    assert "outside 0 to 1000 frames per second" in completed.stderr
