"""`edge bench pipeline` and `edge bench latency` run with tiny settings and print valid JSON."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace

import pytest

from edge.runtime.bench_latency import LoadResult, format_report, p99_ratios
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


def test_latency_ratio_needs_published_frames():
    nominal = LoadResult("nominal", 2, 10.0, 20.0, frames_published=10, latency_p99_ms=20.0)
    overload = LoadResult("2x capacity", 2, 40.0, 80.0, frames_published=30, latency_p99_ms=50.0)
    empty = replace(nominal, frames_published=0, latency_p99_ms=0.0)

    assert p99_ratios([nominal, overload]) == [2.5]
    assert p99_ratios([empty, overload]) == [None]
    assert p99_ratios([nominal, replace(overload, frames_published=0)]) == [None]
    settings = {"cameras": 2, "batch": 1, "max_wait_ms": 20, "inference_workers": 2, "intra_op_threads": 1,
                "provider_used": "CPUExecutionProvider", "seconds": 0.01, "capacity_fps": 140.0,
                "capacity_measured_s": 0.01}
    report = {"machine": {}, "settings": settings, "loads": [], "p99_overload_over_nominal": [None]}
    assert "p99 at overload / p99 at nominal: not measured" in format_report(report)


@pytest.mark.parametrize("command", ["pipeline", "latency"])
def test_bench_rejects_batch_over_cameras(command):
    completed = subprocess.run([*edge_command(), "bench", command, "--cameras", "2", "--batch", "4"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "bench failed: --batch 4 is larger than --cameras 2" in completed.stderr
    assert "use --batch 2 or less, or --cameras 4 or more" in completed.stderr
