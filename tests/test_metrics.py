"""Prometheus metrics: the text format of the health counters, served by a running daemon."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request

import pytest

from prometheus_client.parser import text_string_to_metric_families

from edge.metrics import FrameRateMeter, InferenceStats, render_metrics
from tests.conftest import PEOPLE_CLIP, edge_command, free_port, wait_until
from tests.test_run_daemon import site_toml

HEALTH = {
    "uptime_s": 12.5,
    "cameras": [{"camera_id": "gate-1", "state": "streaming", "frames_decoded": 120, "frames_skipped": 3,
                 "frames_dropped": 1, "frames_inferred": 116, "reconnects": 2, "decode_errors": 4,
                 "detections_published": 40,
                 "plates_read": 0, "plates_invalid": 0, "tracks_without_plate": 0,
                 "faces_seen": 0, "faces_rejected": 0, "face_hits": 0, "last_frame_age_s": 0.05},
                {"camera_id": "gate-2", "state": "backoff", "frames_decoded": 0, "frames_skipped": 0,
                 "frames_dropped": 0, "frames_inferred": 0, "reconnects": 5, "detections_published": 0,
                 "plates_read": 0, "plates_invalid": 0, "tracks_without_plate": 0,
                 "faces_seen": 0, "faces_rejected": 0, "face_hits": 0, "last_frame_age_s": None}],
    "pipelines": {"detect": {"batches": 60, "frames": 116, "errors": 0, "mean_batch_size": 1.93,
                             "mean_batch_ms": 21.4}},
    "publisher": {"sent": 50, "dropped": 0, "hwm_overflows": 3, "outbox_errors": 0, "sequence": 1051,
                  "subscribers": 2, "outbox_messages": None},
}


def test_camera_counters_rendered():
    text = render_metrics(HEALTH)
    assert 'edge_camera_frames_decoded_total{camera="gate-1"} 120' in text
    assert 'edge_camera_reconnects_total{camera="gate-2"} 5' in text
    assert 'edge_camera_decode_errors_total{camera="gate-1"} 4' in text
    assert "# TYPE edge_camera_frames_decoded_total counter" in text


def test_dead_camera_has_no_frame_age():
    text = render_metrics(HEALTH)
    assert 'edge_camera_last_frame_age_seconds{camera="gate-1"} 0.05' in text
    assert 'edge_camera_last_frame_age_seconds{camera="gate-2"}' not in text
    assert 'edge_camera_streaming{camera="gate-2"} 0' in text


def test_pipeline_and_publisher_rendered():
    text = render_metrics(HEALTH)
    assert 'edge_pipeline_mean_batch_ms{pipeline="detect"} 21.4' in text
    assert "edge_publisher_sent_total 50" in text
    assert "edge_uptime_seconds 12.5" in text


def test_publisher_gauges_rendered():
    text = render_metrics(HEALTH)
    assert "edge_publisher_hwm_overflows_total 3" in text
    assert "# TYPE edge_publisher_sequence gauge" in text
    assert "edge_publisher_sequence 1051" in text
    assert "edge_publisher_subscribers 2" in text
    # A publisher without an outbox has no depth to report.
    assert "edge_publisher_outbox_messages " not in text


@pytest.mark.parametrize("seconds, first_bucket", [
    (0.0005, "0.001"), (0.001, "0.001"), (0.0011, "0.002"), (0.05, "0.05"), (1.5, "2"), (2.0, "2"), (7.0, "+Inf"),
])
def test_latency_bucket_bounds(seconds, first_bucket):
    """A value lands in the first bucket whose bound is at least the value, and in every later one."""
    stats = InferenceStats()
    stats.record("model-a", seconds, 1)
    families = {f.name: f for f in text_string_to_metric_families("\n".join(stats.render()) + "\n")}
    buckets = {s.labels["le"]: s.value for s in families["edge_inference_seconds"].samples
               if s.name.endswith("_bucket")}
    bounds = list(buckets)
    assert buckets[first_bucket] == 1
    assert all(buckets[bound] == 0 for bound in bounds[:bounds.index(first_bucket)])
    assert all(buckets[bound] == 1 for bound in bounds[bounds.index(first_bucket):])


def test_histograms_per_model_parse():
    stats = InferenceStats()
    for batch_size in (1, 4, 4, 8):
        stats.record("yolox_nano_416", 0.012, batch_size)
    stats.record("plate-rec", 0.003, 3)
    text = render_metrics(HEALTH, stats)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    batch = families["edge_inference_batch_size"]
    assert batch.type == "histogram"
    values = {(s.name, s.labels["model"], s.labels.get("le")): s.value for s in batch.samples}
    assert values[("edge_inference_batch_size_bucket", "yolox_nano_416", "2")] == 1
    assert values[("edge_inference_batch_size_bucket", "yolox_nano_416", "4")] == 3
    assert values[("edge_inference_batch_size_count", "yolox_nano_416", None)] == 4
    assert values[("edge_inference_batch_size_sum", "yolox_nano_416", None)] == 17
    assert values[("edge_inference_batch_size_bucket", "plate-rec", "4")] == 1
    latency = {(s.name, s.labels["model"]): s.value for s in families["edge_inference_seconds"].samples
               if not s.name.endswith("_bucket")}
    assert latency[("edge_inference_seconds_sum", "yolox_nano_416")] == pytest.approx(0.048)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_frame_rate_since_previous_scrape():
    clock = FakeClock()
    meter = FrameRateMeter(clock)
    health = {"uptime_s": 10.0, "cameras": [{"camera_id": "gate-1", "state": "streaming", "frames_decoded": 50}]}
    # The first scrape has no window to measure over.
    assert meter.update(health) == {}
    clock.now += 0.5
    health["cameras"][0]["frames_decoded"] = 60
    # Half a second is too short a window, so there is still no rate.
    assert meter.update(health) == {}
    clock.now += 1.5
    health["cameras"][0]["frames_decoded"] = 80
    assert meter.update(health) == {"gate-1": 15.0}
    clock.now += 0.5
    health["cameras"][0]["frames_decoded"] = 90
    # Too short again, so the previous rate stays.
    assert meter.update(health) == {"gate-1": 15.0}


def test_frame_rate_of_down_camera_first_scrape():
    """A camera down for 45 s, scraped for the first time, showed its average over the uptime (6.47)."""
    meter = FrameRateMeter(FakeClock())
    health = {"uptime_s": 45.0, "cameras": [{"camera_id": "gate-1", "state": "backoff", "frames_decoded": 291,
                                             "last_frame_age_s": 45.0}]}

    assert meter.update(health) == {"gate-1": 0.0}


def test_frame_rate_zero_after_camera_stops():
    """Frames decoded early in the window do not count once the camera is no longer streaming."""
    clock = FakeClock()
    meter = FrameRateMeter(clock)
    camera = {"camera_id": "gate-1", "state": "streaming", "frames_decoded": 0}
    health = {"uptime_s": 1.0, "cameras": [camera]}
    meter.update(health)
    clock.now += 15
    camera.update(frames_decoded=100, state="connecting")

    assert meter.update(health) == {"gate-1": 0.0}

    clock.now += 15
    camera.update(frames_decoded=250, state="streaming")
    assert meter.update(health) == {"gate-1": 10.0}


def test_frame_rate_rendered_per_camera():
    text = render_metrics(HEALTH, camera_fps={"gate-1": 9.87654, "gate-2": 0.0})

    assert "# TYPE edge_camera_frames_per_second gauge" in text
    assert 'edge_camera_frames_per_second{camera="gate-1"} 9.877' in text
    assert 'edge_camera_frames_per_second{camera="gate-2"} 0' in text


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode("utf-8")
    except OSError:
        return None


def test_daemon_serves_metrics(tmp_path):
    port = free_port()
    config = tmp_path / "site.toml"
    text = site_toml(f"tcp://127.0.0.1:{free_port()}", [{"id": "replay", "name": "r", "source": str(PEOPLE_CLIP),
                                                        "loop": True}])
    config.write_text(text.rsplit("[metrics]", 1)[0] + f"[metrics]\nport = {port}\n", encoding="utf-8")
    process = subprocess.Popen([*edge_command(), "run", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def frames_inferred() -> bool:
            body = fetch(url) or ""
            return 'edge_camera_frames_inferred_total{camera="replay"}' in body and \
                'edge_camera_frames_inferred_total{camera="replay"} 0\n' not in body

        assert wait_until(frames_inferred, 60)
        body = fetch(url)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert body is not None, stderr[-2000:]
    assert 'edge_camera_streaming{camera="replay"} 1' in body
    assert f"metrics on http://127.0.0.1:{port}/metrics" in stderr


def test_busy_metrics_port_does_not_stop_daemon(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    config = tmp_path / "site.toml"
    text = site_toml(f"tcp://127.0.0.1:{free_port()}", [{"id": "replay", "name": "r", "source": str(PEOPLE_CLIP)}])
    config.write_text(text.rsplit("[metrics]", 1)[0] + f"[metrics]\nport = {port}\n", encoding="utf-8")
    try:
        result = subprocess.run([*edge_command(), "run", "--config", str(config), "--duration", "3"],
                                capture_output=True, text=True, timeout=60)
    finally:
        holder.close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"metrics endpoint not started: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_plate_and_face_counters_rendered():
    health = {**HEALTH, "plates": {"pipelines": {"plates": {"plates_published": 7, "hits_published": 2}},
                                   "watchlist_version": 4},
              "faces": {"hits_published": 1, "gallery_persons": 3}}

    text = render_metrics(health)

    assert 'edge_plates_published_total{pipeline="plates"} 7' in text
    assert 'edge_plates_hits_published_total{pipeline="plates"} 2' in text
    assert "edge_plates_watchlist_version 4" in text
    assert "edge_faces_hits_published_total 1" in text
    assert "edge_faces_gallery_persons 3" in text


def test_detect_only_box_has_no_stage_counters():
    """Without a plate or face stage on the box, the per-camera plate and face counters are always 0."""
    text = render_metrics(HEALTH)

    for counter in ("plates_read", "plates_invalid", "tracks_without_plate", "faces_seen", "faces_rejected",
                    "face_hits"):
        assert f"edge_camera_{counter}_total" not in text
    assert 'edge_camera_frames_dropped_total{camera="gate-1"} 1' in text


def test_plate_box_keeps_plate_camera_counters():
    health = {**HEALTH, "plates": {"pipelines": {"plates": {"plates_published": 0}}, "watchlist_version": 0}}

    text = render_metrics(health)

    assert 'edge_camera_plates_read_total{camera="gate-1"} 0' in text
    assert 'edge_camera_plates_invalid_total{camera="gate-2"} 0' in text
    assert "edge_camera_faces_seen_total" not in text


def test_drop_help_gives_reason():
    text = render_metrics(HEALTH)

    help_line = next(line for line in text.splitlines() if line.startswith("# HELP edge_camera_frames_dropped_total"))
    assert "because inference was busy" in help_line
