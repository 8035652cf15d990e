"""One daemon under load with a hung subscriber: high-water-mark overflows, the scraped metrics, a SIGTERM
stop that drains and closes in bounded time, and a restart that continues the sequence numbers."""

from __future__ import annotations

import signal
import subprocess
import urllib.request

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from edge.metrics import LATENCY_BUCKETS_S, MIN_RATE_WINDOW_S
from tests.conftest import PEOPLE_CLIP, edge_command, free_port, wait_until
from tests.support.clip_run import FeedRecorder
from tests.test_run_daemon import site_toml

# systemd's TimeoutStopSec in systemd/edge.service; a stop must finish well within it.
STOP_TIMEOUT_S = 20


def scrape(port: int) -> dict[str, dict]:
    """Return the parsed metric families of the daemon's endpoint, by name, or {} while it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode("utf-8")
    except OSError:
        return {}
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(families: dict, name: str, labels: dict | None = None, suffix: str = "") -> float | None:
    family = families.get(name)
    if family is None:
        return None
    for sample in family.samples:
        if sample.name == name + suffix and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
            return sample.value
    return None


@pytest.fixture(scope="module")
def loaded_run(tmp_path_factory):
    """Run a daemon on a looping clip at full speed with snapshots, while one subscriber never reads."""
    tmp = tmp_path_factory.mktemp("operations")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    metrics_port = free_port()
    config = tmp / "site.toml"
    text = site_toml(endpoint, [{"id": "walkway", "name": "walkway", "source": str(PEOPLE_CLIP), "loop": True,
                                 "realtime": False}],
                     "send_snapshots = true\nsend_empty_frames = true\nsend_hwm = 10\n"
                     f'outbox_path = "{tmp}/outbox.sqlite"')
    config.write_text(text.rsplit("[metrics]", 1)[0] + f"[metrics]\nport = {metrics_port}\n", encoding="utf-8")

    hung = zmq.Context.instance().socket(zmq.SUB)
    hung.setsockopt(zmq.LINGER, 0)
    hung.setsockopt(zmq.RCVHWM, 10)
    hung.setsockopt(zmq.SUBSCRIBE, b"")
    hung.connect(endpoint)
    recorder = FeedRecorder(endpoint)
    process = subprocess.Popen([*edge_command(), "run", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        overflowed = wait_until(lambda: (sample_value(scrape(metrics_port), "edge_publisher_hwm_overflows",
                                                      suffix="_total") or 0) > 0, 60)
        det_at_overflow = len(recorder.topic("det"))
        # The recorder keeps receiving after the hung subscriber overflowed.
        wait_until(lambda: len(recorder.topic("det")) >= det_at_overflow + 20, 30)
        # The frame rate needs two scrapes at least MIN_RATE_WINDOW_S apart.
        wait_until(lambda: sample_value(scrape(metrics_port), "edge_camera_frames_per_second",
                                        {"camera": "walkway"}) is not None, MIN_RATE_WINDOW_S + 5)
        families = scrape(metrics_port)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        hung.close()
    # The final health message may still be on its way from the daemon's socket to the recorder.
    wait_until(lambda: any(all(c["state"] == "stopped" for c in m.header["cameras"])
                           for m in recorder.topic("health")), 5)
    recorder.close()
    return {"overflowed": overflowed, "families": families, "feed": recorder, "stdout": stdout, "stderr": stderr,
            "returncode": process.returncode, "det_at_overflow": det_at_overflow, "config": config,
            "endpoint": endpoint}


def test_overflow_counted_daemon_keeps_running(loaded_run):
    assert loaded_run["overflowed"], loaded_run["stderr"][-3000:]
    assert len(loaded_run["feed"].topic("det")) >= loaded_run["det_at_overflow"] + 20
    assert "overflow(s) (last at" in loaded_run["stderr"]
    final = loaded_run["feed"].final_health()
    assert final["publisher"]["hwm_overflows"] > 0
    assert final["publisher"]["dropped"] == 0


def test_metrics_inference_histograms(loaded_run):
    families = loaded_run["families"]
    latency = families["edge_inference_seconds"]
    assert latency.type == "histogram"
    buckets = [s for s in latency.samples if s.name == "edge_inference_seconds_bucket"
               and s.labels["model"] == "yolox_nano_416"]
    assert [float(s.labels["le"]) for s in buckets] == [*LATENCY_BUCKETS_S, float("inf")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    count = sample_value(families, "edge_inference_seconds", {"model": "yolox_nano_416"}, "_count")
    assert count > 0
    assert counts[-1] == count
    assert sample_value(families, "edge_inference_seconds", {"model": "yolox_nano_416"}, "_sum") > 0
    batch = families["edge_inference_batch_size"]
    assert batch.type == "histogram"
    assert sample_value(families, "edge_inference_batch_size", {"model": "yolox_nano_416"}, "_count") == count
    assert sample_value(families, "edge_inference_batch_size", {"model": "yolox_nano_416", "le": "1"},
                        "_bucket") == count


def test_metrics_camera_and_publisher(loaded_run):
    families = loaded_run["families"]
    camera = {"camera": "walkway"}
    assert sample_value(families, "edge_camera_frames_decoded", camera, "_total") > 0
    assert sample_value(families, "edge_camera_frames_per_second", camera) > 0
    assert sample_value(families, "edge_camera_last_frame_age_seconds", camera) >= 0
    assert sample_value(families, "edge_camera_reconnects", camera, "_total") == 0
    assert sample_value(families, "edge_camera_decode_errors", camera, "_total") == 0
    assert sample_value(families, "edge_camera_frames_dropped", camera, "_total") is not None
    assert sample_value(families, "edge_publisher_sequence") > 0
    assert sample_value(families, "edge_publisher_hwm_overflows", suffix="_total") > 0
    assert sample_value(families, "edge_publisher_subscribers") >= 2
    # The detect pipeline makes no hits, so the outbox stays empty but is reported.
    assert sample_value(families, "edge_publisher_outbox_messages") == 0


def test_sigterm_drains_and_stops(loaded_run):
    assert loaded_run["returncode"] == 0, loaded_run["stderr"][-3000:]
    assert "received SIGTERM; stopping" in loaded_run["stderr"]
    final = loaded_run["feed"].final_health()
    assert {c["state"] for c in final["cameras"]} == {"stopped"}
    # Every batch that went through inference also went through tracking and publishing: none was cut off.
    inferred = sum(c["frames_inferred"] for c in final["cameras"])
    assert inferred == final["pipelines"]["detect"]["frames"]
    assert final["pipelines"]["detect"]["errors"] == 0


def test_restart_continues_sequence(loaded_run):
    last_sequence = max(m.header["sequence"] for m in loaded_run["feed"].messages)
    recorder = FeedRecorder(loaded_run["endpoint"])
    result = subprocess.run([*edge_command(), "run", "--config", str(loaded_run["config"]), "--duration", "3"],
                            capture_output=True, text=True, timeout=60)
    wait_until(lambda: recorder.final_health() is not None, 5)
    recorder.close()
    assert result.returncode == 0, result.stderr[-3000:]
    sequences = [m.header["sequence"] for m in recorder.messages]
    assert sequences, result.stderr[-3000:]
    assert min(sequences) > last_sequence
    assert "resuming after sequence" in result.stderr
