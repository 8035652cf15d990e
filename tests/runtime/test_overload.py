"""The overload warning: a pipeline that drops a large share of the offered frames is logged once a minute."""

from __future__ import annotations

import logging

from edge.runtime.overload import CameraLoad, OverloadMonitor


def loads(inferred_a: int, dropped_a: int, inferred_b: int = 0, dropped_b: int = 0) -> list[CameraLoad]:
    return [CameraLoad("detect", "gate-north", inferred_a, dropped_a),
            CameraLoad("detect", "gate-south", inferred_b, dropped_b)]


def test_overloaded_pipeline_warned(caplog):
    caplog.set_level(logging.WARNING, logger="edge.runtime.overload")
    monitor = OverloadMonitor(now_s=0.0)
    monitor.check(30.0, lambda: loads(100, 200))  # before the first interval ended: nothing
    monitor.check(60.0, lambda: loads(200, 400, 300, 0))

    (record,) = caplog.records
    message = record.getMessage()
    assert "pipeline detect is overloaded" in message
    assert "took 8.3 frames/s and dropped 400 of 900 offered frames (44%; most on gate-north 67%, gate-south 0%)" \
        in message
    assert "lower max_fps, turn on motion_gating" in message


def test_counts_only_the_last_interval(caplog):
    caplog.set_level(logging.WARNING, logger="edge.runtime.overload")
    monitor = OverloadMonitor(now_s=0.0)
    monitor.check(60.0, lambda: loads(100, 900))
    caplog.clear()
    # The next minute kept up: 600 more frames inferred and 10 more dropped.
    monitor.check(120.0, lambda: loads(700, 910))
    assert caplog.records == []


def test_loads_read_only_when_due():
    reads = []

    def read_loads() -> list[CameraLoad]:
        reads.append(1)
        return loads(0, 0)

    monitor = OverloadMonitor(now_s=0.0)
    for tick in range(1, 300):
        monitor.check(tick * 0.2, read_loads)  # the daemon's loop ticks every 0.2 s
    assert len(reads) == 0
    monitor.check(60.0, read_loads)
    assert len(reads) == 1


def test_idle_pipeline_not_warned(caplog):
    caplog.set_level(logging.WARNING, logger="edge.runtime.overload")
    monitor = OverloadMonitor(now_s=0.0)
    monitor.check(60.0, lambda: loads(0, 0))
    assert caplog.records == []
