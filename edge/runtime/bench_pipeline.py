"""`edge bench pipeline`: frames/s of the detection pipeline against the bare ONNX Runtime call.

The pipeline side runs the scheduler, its inference workers, letterboxing, decoding, NMS and tracking
for N cameras that always have a frame waiting. The bare side calls `session.run` on the same sessions
with tensors letterboxed from the same frames before timing, from one thread per worker. Both sides run
in the same process, and every repeat runs all cases in alternating order, so a drift of the machine
lands on every case. The bench reports medians and ratios and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edge.config.pipeline import DetectStage
from edge.config.site import RuntimeConfig
from edge.runtime.bench_support import (WorkerLayout, build_workers, check_batch_fits, load_frames,
                                        machine_facts, measure_saturated, print_report)
from edge.core.letterbox import letterbox_into
from edge.runtime.detector import Detector
from edge.runtime.layout import resolve_layout

WARM_UP_S = 0.5
FRAME_POOL = 16
TARGET_RATIO = 0.85  # pipeline over bare ONNX Runtime at the default layout


@dataclass(frozen=True)
class Case:
    kind: str  # "pipeline" or "bare"
    layout: WorkerLayout
    batch: int

    @property
    def label(self) -> str:
        return f"{self.kind}, {self.layout.label}, batch {self.batch}"


@dataclass
class CaseResult:
    label: str
    kind: str
    workers: int
    threads: int
    batch: int
    fps_samples: list[float] = field(default_factory=list)

    @property
    def fps_median(self) -> float:
        return statistics.median(self.fps_samples)


def make_tensors(worker: Detector, frames: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Letterbox the frames, `batch` at a time, into input tensors made as the worker makes its own."""
    tensors = []
    for start in range(0, len(frames) - batch + 1, batch):
        tensor = np.empty((batch, 3, worker.spec.height, worker.spec.width), dtype=np.float32)
        for index, frame in enumerate(frames[start:start + batch]):
            letterbox_into(frame, worker.spec, tensor[index])
        tensors.append(tensor)
    return tensors


def measure_bare(workers: list[Detector], tensors: list[np.ndarray], seconds: float) -> float:
    """Return frames/s of `session.run` alone, one thread per worker, all starting together.

    Each thread's rate runs from the common start to its own last completed call, so a call still
    running at the stop neither counts nor adds idle time.
    """
    counts = [0] * len(workers)
    last_done = [0.0] * len(workers)
    start = threading.Barrier(len(workers) + 1)
    stop = threading.Event()

    def loop(index: int, worker: Detector) -> None:
        session, name = worker.session, worker.input_name
        session.run(None, {name: tensors[0]})
        start.wait()
        calls = 0
        # At least one call per thread, so a run shorter than one call still measures something.
        while calls == 0 or not stop.is_set():
            tensor = tensors[calls % len(tensors)]
            session.run(None, {name: tensor})
            counts[index] += len(tensor)
            last_done[index] = time.perf_counter()
            calls += 1

    threads = [threading.Thread(target=loop, args=(i, w), name=f"bench-bare-{i}") for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(count / (done - started) for count, done in zip(counts, last_done))


def plan_cases(default: Case, batch: int) -> list[Case]:
    cases = [default, Case("bare", default.layout, default.batch)]
    for layout in (WorkerLayout(1, 2), WorkerLayout(2, 1)):
        for case_batch in (1, batch):
            case = Case("pipeline", layout, case_batch)
            if case not in cases:
                cases.append(case)
    return cases


def run_bench(args: argparse.Namespace) -> dict:
    check_batch_fits(args.batch, args.cameras)
    runtime = RuntimeConfig(providers=args.providers)
    layout = resolve_layout(runtime, DetectStage(model="bench", batch_size=args.batch))
    default = Case("pipeline", WorkerLayout(layout.inference_workers, layout.intra_op_threads), args.batch)
    cases = plan_cases(default, args.batch)
    frames = load_frames(max(FRAME_POOL, args.batch))
    workers = {case.layout: None for case in cases}
    for worker_layout in workers:
        workers[worker_layout] = build_workers(worker_layout, args.batch, args.providers)
    tensors = make_tensors(workers[default.layout][0], frames, default.batch)

    def measure(case: Case, seconds: float) -> float:
        if case.kind == "bare":
            return measure_bare(workers[case.layout], tensors, seconds)
        return measure_saturated(workers[case.layout], case.batch, args.cameras, frames, seconds)

    results = {case: CaseResult(case.label, case.kind, case.layout.workers, case.layout.threads, case.batch)
               for case in cases}
    started = time.perf_counter()
    for case in cases:
        measure(case, min(WARM_UP_S, args.seconds))
    for repeat in range(args.repeats):
        for case in cases if repeat % 2 == 0 else reversed(cases):
            results[case].fps_samples.append(round(measure(case, args.seconds), 2))
    elapsed_s = time.perf_counter() - started

    def ratio(name: str, numerator: Case, denominator: Case) -> dict:
        top, bottom = results[numerator].fps_samples, results[denominator].fps_samples
        # Both cases of one repeat ran within seconds of each other, so the median of the per-repeat
        # ratios is less exposed to other load on the machine than the ratio of the two medians.
        paired = statistics.median(a / b for a, b in zip(top, bottom))
        return {"name": name, "numerator": numerator.label, "denominator": denominator.label,
                "ratio": round(statistics.median(top) / statistics.median(bottom), 3),
                "paired_ratio": round(paired, 3)}

    one_by_two, two_by_one = WorkerLayout(1, 2), WorkerLayout(2, 1)
    ratios = [
        ratio("pipeline / bare ONNX Runtime", default, Case("bare", default.layout, default.batch)),
        ratio("2 workers x 1 thread / 1 worker x 2 threads, batch 1", Case("pipeline", two_by_one, 1),
              Case("pipeline", one_by_two, 1)),
        ratio(f"2 workers x 1 thread / 1 worker x 2 threads, batch {args.batch}",
              Case("pipeline", two_by_one, args.batch), Case("pipeline", one_by_two, args.batch)),
        ratio(f"batch {args.batch} / batch 1, 1 worker x 2 threads", Case("pipeline", one_by_two, args.batch),
              Case("pipeline", one_by_two, 1)),
        ratio(f"batch {args.batch} / batch 1, 2 workers x 1 thread", Case("pipeline", two_by_one, args.batch),
              Case("pipeline", two_by_one, 1)),
    ]
    provider = workers[default.layout][0].provider
    return {
        "machine": machine_facts(args.providers),
        "settings": {"cameras": args.cameras, "batch": args.batch, "seconds": args.seconds,
                     "repeats": args.repeats, "provider_used": provider, "device_class": layout.device_class,
                     "default_layout": default.layout.label, "target_ratio": TARGET_RATIO,
                     "measured_in_s": round(elapsed_s, 1)},
        "cases": [{**asdict(result), "fps_median": round(result.fps_median, 2)} for result in results.values()],
        "ratios": ratios,
    }


def format_report(report: dict) -> str:
    lines = [f"{key + ':':13s}{value}" for key, value in report["machine"].items()]
    settings = report["settings"]
    lines.append(f"{'settings:':13s}{settings['cameras']} cameras, batch {settings['batch']}, {settings['seconds']:g} s "
                 f"per case, median of {settings['repeats']} runs, {settings['provider_used']}, default layout "
                 f"{settings['default_layout']}")
    lines.append(f"{'measured in:':13s}{settings['measured_in_s']} s")
    lines.append("")
    width = max(len(case["label"]) for case in report["cases"])
    lines.append(f"{'case'.ljust(width)}  frames/s  samples")
    for case in report["cases"]:
        samples = " ".join(f"{sample:.1f}" for sample in case["fps_samples"])
        lines.append(f"{case['label'].ljust(width)}  {case['fps_median']:8.1f}  {samples}")
    lines.append("")
    width = max(len(item["name"]) for item in report["ratios"])
    lines.append(f"{'ratio'.ljust(width)}  of medians  median of per-repeat ratios")
    for item in report["ratios"]:
        lines.append(f"{item['name'].ljust(width)}  {item['ratio']:10.2f}  {item['paired_ratio']:10.2f}")
    main_ratio = report["ratios"][0]["ratio"]
    verdict = "meets" if main_ratio >= settings["target_ratio"] else "misses"
    lines.append(f"\npipeline / bare ONNX Runtime {main_ratio:.2f} {verdict} the target of {settings['target_ratio']}; "
                 "the machine may be shared, so compare ratios within one run only.")
    return "\n".join(lines)


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    return print_report(args, run_bench, format_report)


def add_bench_pipeline_parser(bench_commands: argparse._SubParsersAction) -> None:
    from edge.cli import positive_count, positive_seconds

    pipeline = bench_commands.add_parser(
        "pipeline", help="frames/s of the detection pipeline against bare ONNX Runtime, and worker layouts")
    pipeline.add_argument("--cameras", type=positive_count, default=8, help="cameras, each always with a frame "
                          "waiting (default 8)")
    pipeline.add_argument("--batch", type=positive_count, default=8, help="frames per inference call of the "
                          "pipeline and bare cases, at most --cameras; the layout cases also run batch 1 "
                          "(default 8)")
    pipeline.add_argument("--seconds", type=positive_seconds, default=5.0, metavar="N",
                          help="seconds each case runs per repeat (default 5)")
    pipeline.add_argument("--repeats", type=positive_count, default=3, help="runs per case, interleaved with "
                          "the other cases; the median is shown (default 3)")
    pipeline.add_argument("--providers", nargs="+", default=["cpu"], choices=["tensorrt", "cuda", "cpu"],
                          help="ONNX Runtime providers in order of preference (default: cpu)")
    pipeline.add_argument("--json", action="store_true", help="print the results as JSON")
    pipeline.set_defaults(handler=cmd_bench_pipeline)
