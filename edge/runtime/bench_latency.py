"""`edge bench latency`: time from a frame's arrival in its camera slot to its message reaching the publisher.

First a saturated run measures the frames/s the box sustains. Then in-process sources put frames into
the cameras' slots at a fixed rate, one feeder thread for all cameras with the cameras' phases spread
evenly: at the nominal load (below that capacity), then at 2 and 4 times the capacity. Under overload
each slot keeps only its newest frame and counts the replaced one as dropped, so latency should stay at
a few batch times instead of growing with the load. The bench reports and asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edge.bus.schema import TOPIC_DETECTIONS
from edge.config.pipeline import DetectStage
from edge.config.site import RuntimeConfig
from edge.ingest.slot import FramePacket
from edge.runtime.bench_support import (BenchError, PipelineRun, WorkerLayout, build_workers, check_batch_fits,
                                        load_frames, machine_facts, measure_saturated, print_report, start_pipeline)
from edge.runtime.detector import Detector
from edge.runtime.layout import resolve_layout

FRAME_POOL = 16
OVERLOADS = (2.0, 4.0)  # offered load as a multiple of the measured capacity
NOMINAL_SHARE = 0.5  # default nominal load as a share of the capacity
DRAIN_TIMEOUT_S = 10.0


@dataclass
class LoadResult:
    label: str
    cameras: int
    fps_per_camera: float
    offered_fps: float
    frames_offered: int = 0
    frames_published: int = 0
    frames_dropped: int = 0
    dropped_per_camera: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_max_ms: float = 0.0
    # One inference call's mean time in this run, and p99 in units of it. On a shared machine the batch
    # time drifts with the other load, and p99 in batch times shows whether the wait itself grew.
    mean_batch_ms: float = 0.0
    p99_in_batch_times: float = 0.0
    feeder_late_p99_ms: float = 0.0  # how far behind its schedule the feeder put frames, which shows a starved source


class LatencyProbe:
    """Records when each frame arrived and when its message reached the publisher."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, int], float] = {}
        self.latencies_s: list[float] = []
        self.published = 0
        self._current: dict[str, FramePacket] = {}

    def wrap(self, on_batch):
        # Batches are handed on one at a time, and a batch contains at most one frame per camera, so the
        # camera id of a message identifies its frame.
        def on_batch_recorded(packets, results):
            self._current = {packet.camera_id: packet for packet in packets}
            on_batch(packets, results)

        return on_batch_recorded

    def publish(self, topic: str, body: dict, images: list[bytes]) -> bool:
        if topic == TOPIC_DETECTIONS:
            packet = self._current[body["camera_id"]]
            arrived = self.arrivals.pop((packet.camera_id, packet.frame_index))
            self.latencies_s.append(time.perf_counter() - arrived)
            self.published += 1
        return True


def feed_at_fixed_rate(run: PipelineRun, probe: LatencyProbe, frames: list[np.ndarray], fps_per_camera: float,
                       seconds: float, late_s: list[float]) -> int:
    """Put frames into every camera's slot at `fps_per_camera` for `seconds`, and return how many were put."""
    slots = run.scheduler.slots
    interval_s = 1.0 / (fps_per_camera * len(slots))
    started = time.perf_counter()
    total = int(seconds * fps_per_camera * len(slots))
    for sequence in range(total):
        due = started + sequence * interval_s
        wait_s = due - time.perf_counter()
        if wait_s > 0:
            time.sleep(wait_s)
        else:
            late_s.append(-wait_s)
        slot = slots[sequence % len(slots)]
        index = sequence // len(slots)
        frame = frames[(index + sequence) % len(frames)]
        probe.arrivals[(slot.camera_id, index)] = time.perf_counter()
        slot.put(FramePacket(slot.camera_id, frame, time.time(), index))
    return total


def wait_drained(run: PipelineRun, probe: LatencyProbe, expected: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while probe.published < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    if probe.published < expected:
        raise BenchError(f"only {probe.published} of {expected} frames reached the publisher within "
                         f"{DRAIN_TIMEOUT_S:g} s of the last frame; the pipeline hangs or fails")


def run_load(workers: list[Detector], batch: int, max_wait_ms: float, cameras: int, fps_per_camera: float,
             frames: list[np.ndarray], seconds: float, label: str) -> LoadResult:
    probe = LatencyProbe()
    run = start_pipeline(workers, batch, max_wait_ms, cameras, probe.publish, send_empty_frames=True)
    run.scheduler.on_batch = probe.wrap(run.scheduler.on_batch)
    late_s: list[float] = []
    try:
        offered = feed_at_fixed_rate(run, probe, frames, fps_per_camera, seconds, late_s)
        dropped = {slot.camera_id: slot.dropped for slot in run.scheduler.slots}
        wait_drained(run, probe, offered - sum(dropped.values()))
    finally:
        run.close()
    dropped = {slot.camera_id: slot.dropped for slot in run.scheduler.slots}
    latencies_ms = 1000 * np.asarray(probe.latencies_s or [0.0])
    counters = run.scheduler.counters
    mean_batch_ms = 1000 * counters.inference_s / max(counters.batches, 1)
    p99_ms = float(np.percentile(latencies_ms, 99))
    return LoadResult(
        label=label, cameras=cameras, fps_per_camera=round(fps_per_camera, 2),
        offered_fps=round(fps_per_camera * cameras, 1), frames_offered=offered, frames_published=probe.published,
        frames_dropped=sum(dropped.values()), dropped_per_camera=dropped,
        latency_p50_ms=round(float(np.percentile(latencies_ms, 50)), 1),
        latency_p99_ms=round(p99_ms, 1),
        latency_max_ms=round(float(latencies_ms.max()), 1),
        mean_batch_ms=round(mean_batch_ms, 1),
        p99_in_batch_times=round(p99_ms / mean_batch_ms, 2) if mean_batch_ms else 0.0,
        feeder_late_p99_ms=round(1000 * float(np.percentile(late_s, 99)), 1) if late_s else 0.0,
    )


def run_bench(args: argparse.Namespace) -> dict:
    if args.batch is not None:
        check_batch_fits(args.batch, args.cameras)
    runtime = RuntimeConfig(providers=args.providers)
    stage = DetectStage(model="bench") if args.batch is None else DetectStage(model="bench", batch_size=args.batch)
    layout = resolve_layout(runtime, stage)
    workers = build_workers(WorkerLayout(layout.inference_workers, layout.intra_op_threads), layout.batch_size,
                            args.providers)
    frames = load_frames(FRAME_POOL)
    calibration_s = min(args.seconds, 3.0)
    capacity_fps = measure_saturated(workers, layout.batch_size, args.cameras, frames, calibration_s)
    nominal_fps = args.fps or NOMINAL_SHARE * capacity_fps / args.cameras
    loads = [("nominal", nominal_fps)] + [(f"{factor:g}x capacity", factor * capacity_fps / args.cameras)
                                          for factor in OVERLOADS]
    results = [run_load(workers, layout.batch_size, args.max_wait_ms, args.cameras, fps, frames, args.seconds,
                        label) for label, fps in loads]
    return {
        "machine": machine_facts(args.providers),
        "settings": {"cameras": args.cameras, "seconds": args.seconds, "batch": layout.batch_size,
                     "max_wait_ms": args.max_wait_ms, "inference_workers": layout.inference_workers,
                     "intra_op_threads": layout.intra_op_threads, "provider_used": workers[0].provider,
                     "capacity_fps": round(capacity_fps, 1), "capacity_measured_s": calibration_s},
        "loads": [asdict(result) for result in results],
        "p99_overload_over_nominal": p99_ratios(results),
    }


def p99_ratios(results: list[LoadResult]) -> list[float | None]:
    """Return each overload's p99 latency over the nominal load's, the first result.

    A load that published nothing has no latency, so its ratio, or every ratio when the nominal load
    published nothing, is None.
    """
    nominal = results[0]
    return [round(result.latency_p99_ms / nominal.latency_p99_ms, 2)
            if nominal.frames_published and result.frames_published and nominal.latency_p99_ms > 0 else None
            for result in results[1:]]


def format_report(report: dict) -> str:
    lines = [f"{key + ':':13s}{value}" for key, value in report["machine"].items()]
    settings = report["settings"]
    lines.append(f"{'settings:':13s}{settings['cameras']} cameras, batch {settings['batch']}, max_wait "
                 f"{settings['max_wait_ms']:g} ms, {settings['inference_workers']} worker(s) x "
                 f"{settings['intra_op_threads']} thread(s), {settings['provider_used']}, {settings['seconds']:g} s "
                 "per load")
    lines.append(f"{'capacity:':13s}{settings['capacity_fps']} frames/s with every camera busy "
                 f"({settings['capacity_measured_s']:g} s run)")
    lines.append("")
    header = ("load", "fps/camera", "offered/s", "offered", "published", "dropped", "p50 ms", "p99 ms", "max ms",
              "batch ms", "p99/batch", "feeder late p99 ms")
    rows = [header] + [(load["label"], f"{load['fps_per_camera']:g}", f"{load['offered_fps']:g}",
                        str(load["frames_offered"]), str(load["frames_published"]), str(load["frames_dropped"]),
                        f"{load['latency_p50_ms']:.1f}", f"{load['latency_p99_ms']:.1f}",
                        f"{load['latency_max_ms']:.1f}", f"{load['mean_batch_ms']:.1f}",
                        f"{load['p99_in_batch_times']:.2f}", f"{load['feeder_late_p99_ms']:.1f}")
                       for load in report["loads"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join([row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]))
    lines.append("")
    for load in report["loads"]:
        per_camera = ", ".join(f"{camera} {count}" for camera, count in load["dropped_per_camera"].items())
        lines.append(f"dropped at {load['label']}: {per_camera}")
    values = report["p99_overload_over_nominal"]
    if None in values:
        lines.append("p99 at overload / p99 at nominal: not measured, because a load published no frames; "
                     "use a longer --seconds")
    else:
        lines.append(f"p99 at overload / p99 at nominal: {', '.join(f'{value:.2f}' for value in values)}")
    return "\n".join(lines)


def cmd_bench_latency(args: argparse.Namespace) -> int:
    return print_report(args, run_bench, format_report)


def _frame_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of frames per second") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"{text} is outside 0 to 1000 frames per second")
    return value


def _wait_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of milliseconds") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text} is outside 0 to 1000 ms, the range of detect.max_wait_ms")
    return value


def add_bench_latency_parser(bench_commands: argparse._SubParsersAction) -> None:
    from edge.cli import positive_count, positive_seconds

    latency = bench_commands.add_parser(
        "latency", help="frame arrival to publisher latency at nominal load and under overload")
    latency.add_argument("--cameras", type=positive_count, default=8, help="synthetic cameras (default 8)")
    latency.add_argument("--fps", type=_frame_rate, default=None, metavar="F",
                         help="frames per second of each camera at the nominal load (default: half the measured "
                         "capacity, shared by the cameras)")
    latency.add_argument("--seconds", type=positive_seconds, default=5.0, metavar="S",
                         help="seconds each load runs (default 5). The capacity run takes at most 3 s")
    latency.add_argument("--batch", type=positive_count, default=None,
                         help="frames per inference call (default: the device default of edge/runtime/layout.py)")
    latency.add_argument("--max-wait-ms", type=_wait_ms, default=20.0, metavar="MS",
                         help="maximum wait for a batch to fill, as detect.max_wait_ms (default 20)")
    latency.add_argument("--providers", nargs="+", default=["cpu"], choices=["tensorrt", "cuda", "cpu"],
                         help="ONNX Runtime providers in order of preference (default: cpu)")
    latency.add_argument("--json", action="store_true", help="print the results as JSON")
    latency.set_defaults(handler=cmd_bench_latency)
