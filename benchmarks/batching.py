"""Measure batching, preprocessing and threading ratios of the detection path, side by side in one run.

Three comparisons, each timed with warm-up and alternating order, reported as medians and a ratio
baseline/compared (above 1 means the compared path is faster):

a) One `Detector.detect` call on B frames against B single-frame calls, for B = 1, 2, 4, 8.
b) `letterbox_into` (cv2 resize + Numba pack kernel) against a NumPy reference of the same transform.
c) Two threads calling the detector at once against the same calls made one after another.

Only the ratios within one run are meaningful: the absolute times depend on the machine and its load.
Nothing here asserts on a time. The script exits 1 when the NumPy reference and `letterbox_into`
disagree, and 2 when the model or clips cannot be found.

    EDGE_MODEL_DIR=... EDGE_MEDIA_DIR=... python benchmarks/batching.py [--frames N] [--repeats R] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from itertools import chain, zip_longest
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np

from edge.config.pipeline import DetectStage
from edge.core.letterbox import InputSpec, letterbox_into
from edge.models.manifest import AssetError, load_manifest, media_dirs, model_dirs, resolve_file
from edge.runtime.detector import Detector, Detections

MODEL_NAME = "yolox_nano_416"
# Two cameras with different scenes, so every batch of two or more frames mixes cameras.
CLIP_NAMES = ("car-detection", "one-by-one-person-detection")
BATCH_SIZES = (1, 2, 4, 8)
WARMUP_RUNS = 2
DEFAULT_FRAMES = 24
DEFAULT_REPEATS = 7
# ImageNet mean and std in 0..255 units with RGB order and centred padding. YOLOX uses the opposite
# choice on every field, so checking both specs covers each branch of the pack kernel.
IMAGENET_SPEC = InputSpec(320, 320, "rgb", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "centre", 0)

EXIT_MISMATCH = 1
EXIT_SETUP = 2


@dataclass
class Comparison:
    """Result of one timed pair, with medians in `unit` and the ratio baseline/compared."""

    part: str
    name: str
    baseline: str
    compared: str
    unit: str
    baseline_median: float
    compared_median: float
    baseline_samples: list[float] = field(repr=False)
    compared_samples: list[float] = field(repr=False)

    @property
    def ratio(self) -> float:
        return self.baseline_median / self.compared_median


# ---------------------------------------------------------------- set-up


def fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def check_environment() -> None:
    """Exit with the variables to set when the model or media folder is not configured."""
    missing = [name for name in ("EDGE_MODEL_DIR", "EDGE_MEDIA_DIR") if not os.environ.get(name)]
    if missing:
        fail(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. Set EDGE_MODEL_DIR to the folder that contains "
            f"{MODEL_NAME}.onnx (directly or in coco/) and EDGE_MEDIA_DIR to the folder with the clips "
            f"{', '.join(name + '.mp4' for name in CLIP_NAMES)}, for example "
            "EDGE_MODEL_DIR=/data/models EDGE_MEDIA_DIR=/data/videos python benchmarks/batching.py",
            EXIT_SETUP,
        )


def decode_spread(path: Path, count: int) -> list[np.ndarray]:
    """Decode `count` BGR frames spread evenly over the clip, so they show different scenes."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stride = max(1, stream.frames // count) if stream.frames else 1
        frames = []
        for index, frame in enumerate(container.decode(stream)):
            if index % stride == 0:
                frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == count:
                break
    if len(frames) < count:
        fail(f"{path} has only {len(frames)} frames at stride {stride}, {count} requested; lower --frames",
             EXIT_SETUP)
    return frames


def load_frames(total: int) -> list[np.ndarray]:
    """Decode `total` frames from the two clips, interleaved camera by camera."""
    manifest = load_manifest()
    per_clip = (math.ceil(total / 2), total // 2)
    decoded = [decode_spread(resolve_file(manifest.entry(name), media_dirs()), count)
               for name, count in zip(CLIP_NAMES, per_clip)]
    interleaved = chain.from_iterable(zip_longest(*decoded))
    return [frame for frame in interleaved if frame is not None]


def build_detector(batch_size: int, intra_op_threads: int = 0) -> Detector:
    entry = load_manifest().model(MODEL_NAME)
    path = resolve_file(entry, model_dirs())
    stage = DetectStage(model=entry.name, batch_size=batch_size)
    detector = Detector(entry, path, stage, ["cpu"], intra_op_threads=intra_op_threads)
    if detector.max_batch != batch_size:
        fail(f"{path} accepts batch size {detector.max_batch} only, so batch {batch_size} cannot be measured",
             EXIT_SETUP)
    return detector


# ---------------------------------------------------------------- timing


def time_call(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def time_pair(baseline: Callable[[], object], compared: Callable[[], object],
              repeats: int) -> tuple[list[float], list[float]]:
    """Time both callables `repeats` times each, in alternating order, after WARMUP_RUNS untimed runs.

    Alternating which one runs first spreads slow drifts of the machine (other tenants, CPU
    frequency) over both sides instead of charging them to one.
    """
    for _ in range(WARMUP_RUNS):
        baseline()
        compared()
    baseline_times, compared_times = [], []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            baseline_times.append(time_call(baseline))
            compared_times.append(time_call(compared))
        else:
            compared_times.append(time_call(compared))
            baseline_times.append(time_call(baseline))
    return baseline_times, compared_times


def to_comparison(part: str, name: str, labels: tuple[str, str], unit: str, scale: float,
                  samples: tuple[list[float], list[float]]) -> Comparison:
    """Build a Comparison, converting samples in seconds to `unit` by multiplying by `scale`."""
    baseline = [value * scale for value in samples[0]]
    compared = [value * scale for value in samples[1]]
    return Comparison(part, name, labels[0], labels[1], unit, statistics.median(baseline),
                      statistics.median(compared), baseline, compared)


# ---------------------------------------------------------------- a) detector batching


def detect_in_chunks(detector: Detector, frames: list[np.ndarray], batch_size: int) -> list[Detections]:
    results = []
    for start in range(0, len(frames), batch_size):
        results.extend(detector.detect(frames[start:start + batch_size]))
    return results


def max_detection_difference(first: list[Detections], second: list[Detections]) -> float | None:
    """Compute the largest box or score difference between two result lists, or None if counts differ."""
    largest = 0.0
    for a, b in zip(first, second, strict=True):
        if len(a) != len(b) or not np.array_equal(a.class_ids, b.class_ids):
            return None
        if len(a):
            largest = max(largest, float(np.abs(a.boxes_xyxy - b.boxes_xyxy).max()),
                          float(np.abs(a.scores - b.scores).max()))
    return largest


def measure_batching(frames: list[np.ndarray], repeats: int) -> tuple[list[Comparison], dict]:
    """Time B single-frame calls against one call on B frames, over the whole frame pool.

    Also returns how many objects the single calls found and, per batch size, the largest difference
    of the batched results from them (None when the detections differ in number or class).
    """
    single = build_detector(1)
    single_results = detect_in_chunks(single, frames, 1)
    per_frame_ms = 1000 / len(frames)
    comparisons, differences = [], {}
    for batch_size in BATCH_SIZES:
        batched = build_detector(batch_size)
        differences[batch_size] = max_detection_difference(single_results,
                                                           detect_in_chunks(batched, frames, batch_size))
        samples = time_pair(lambda: detect_in_chunks(single, frames, 1),
                            lambda: detect_in_chunks(batched, frames, batch_size), repeats)
        comparisons.append(to_comparison("a", f"detect, batch {batch_size}",
                                         (f"{batch_size} x 1-frame call", f"1 x {batch_size}-frame call"),
                                         "ms/frame", per_frame_ms, samples))
    agreement = {"detections": sum(len(result) for result in single_results), "max_difference": differences}
    return comparisons, agreement


# ---------------------------------------------------------------- b) preprocessing


def letterbox_numpy(frame_bgr: np.ndarray, spec: InputSpec, out_chw: np.ndarray) -> None:
    """Write the letterboxed, normalised CHW tensor of `frame_bgr` into `out_chw` with NumPy only.

    The reference reimplements the fit rule of `letterbox_into` (keep the aspect ratio, round the
    resized size, clamp it to the input) and uses the same cv2 INTER_LINEAR resize. Padding, channel
    order and (pixel - mean) / std are whole-array NumPy operations.
    """
    source_height, source_width = frame_bgr.shape[:2]
    scale = min(spec.width / source_width, spec.height / source_height)
    resized_width = min(spec.width, max(1, round(source_width * scale)))
    resized_height = min(spec.height, max(1, round(source_height * scale)))
    pad_x = (spec.width - resized_width) // 2 if spec.alignment == "centre" else 0
    pad_y = (spec.height - resized_height) // 2 if spec.alignment == "centre" else 0

    resized = cv2.resize(frame_bgr, (resized_width, resized_height), interpolation=cv2.INTER_LINEAR)
    if spec.colour_order == "rgb":
        resized = resized[:, :, ::-1]
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]

    out_chw[:] = (spec.pad_value - mean) / std
    region = out_chw[:, pad_y:pad_y + resized_height, pad_x:pad_x + resized_width]
    np.subtract(resized.transpose(2, 0, 1), mean, out=region)
    np.divide(region, std, out=region)


def verify_letterbox(frames: list[np.ndarray], specs: list[InputSpec]) -> None:
    """Exit 1 unless `letterbox_into` and the NumPy reference write the same tensor for every frame."""
    # A portrait crop pads along x, where the clips (landscape) pad along y.
    samples = [*frames, np.ascontiguousarray(frames[0][:, :200])]
    for spec in specs:
        expected = np.empty((3, spec.height, spec.width), dtype=np.float32)
        actual = np.empty_like(expected)
        for index, frame in enumerate(samples):
            letterbox_numpy(frame, spec, expected)
            letterbox_into(frame, spec, actual)
            try:
                # The kernel multiplies by 1/std where the reference divides, so allow float32 rounding.
                np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
            except AssertionError as error:
                fail(f"letterbox_into differs from the NumPy reference for sample {index} "
                     f"(shape {frame.shape}) with {spec}:\n{error}", EXIT_MISMATCH)


def measure_letterbox(frames: list[np.ndarray], spec: InputSpec, repeats: int) -> Comparison:
    out_chw = np.empty((3, spec.height, spec.width), dtype=np.float32)

    def run_numpy() -> None:
        for frame in frames:
            letterbox_numpy(frame, spec, out_chw)

    def run_letterbox_into() -> None:
        for frame in frames:
            letterbox_into(frame, spec, out_chw)

    samples = time_pair(run_numpy, run_letterbox_into, repeats)
    height, width = frames[0].shape[:2]
    return to_comparison("b", f"letterbox {width}x{height} to {spec.width}x{spec.height}",
                         ("NumPy reference", "letterbox_into"), "ms/frame", 1000 / len(frames), samples)


# ---------------------------------------------------------------- c) threading


def run_concurrently(tasks: list[Callable[[], object]]) -> None:
    """Run each task in its own thread, released together by a barrier, and wait for all of them."""
    barrier = threading.Barrier(len(tasks))

    def start_together(task: Callable[[], object]) -> None:
        barrier.wait()
        task()

    threads = [threading.Thread(target=start_together, args=(task,)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def measure_threading(frames: list[np.ndarray], calls: int, repeats: int) -> list[Comparison]:
    """Time 2 x `calls` single-frame detections made one after another against the same calls from 2 threads at once.

    With one Detector per thread, a ratio near 2 on 2 free cores means ONNX Runtime releases the GIL
    during inference. A shared Detector serialises its callers with its lock, so it shows the cost of
    sharing one instance between threads.
    """
    # One intra-op thread per session, so any speed-up comes from the two Python threads.
    per_thread = [build_detector(1, intra_op_threads=1) for _ in range(2)]
    shared = [per_thread[0], per_thread[0]]
    camera_frames = frames[:2]  # one frame from each clip

    def camera_task(detector: Detector, frame: np.ndarray) -> Callable[[], None]:
        def detect_repeatedly() -> None:
            for _ in range(calls):
                detector.detect([frame])
        return detect_repeatedly

    comparisons = []
    for name, detectors in (("one Detector per thread", per_thread), ("one shared Detector", shared)):
        tasks = [camera_task(detector, frame) for detector, frame in zip(detectors, camera_frames)]

        def run_sequentially() -> None:
            for task in tasks:
                task()

        samples = time_pair(run_sequentially, lambda: run_concurrently(tasks), repeats)
        comparisons.append(to_comparison("c", f"2 cameras x {calls} calls, {name}",
                                         ("sequential", "2 threads"), "ms wall", 1000, samples))
    return comparisons


# ---------------------------------------------------------------- report


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def operating_system() -> str:
    try:
        name = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        name = platform.system()
    return f"{name}, kernel {platform.release()}"


def machine_facts() -> dict[str, str]:
    usable_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable_cores} usable by this process",
        "os": operating_system(),
        "python": platform.python_version(),
        "onnxruntime": metadata.version("onnxruntime"),
        "numba": metadata.version("numba"),
        "numpy": metadata.version("numpy"),
        "opencv": cv2.__version__,
        "av": av.__version__,
    }


def print_table(facts: dict, settings: dict, comparisons: list[Comparison], agreement: dict) -> None:
    for key, value in {**facts, **settings}.items():
        print(f"{key + ':':<14}{value}")
    print()
    print("ratio = baseline / compared; above 1 means the compared path is faster.")
    header = ("", "measurement", "baseline", "compared", "unit", "baseline", "compared", "ratio")
    row_format = "{:<2} {:<46} {:<17} {:<17} {:<9} {:>9} {:>9} {:>6}"
    print(row_format.format(*header))
    for item in comparisons:
        print(row_format.format(item.part, item.name, item.baseline, item.compared, item.unit,
                                f"{item.baseline_median:.2f}", f"{item.compared_median:.2f}", f"{item.ratio:.2f}"))
    print()
    print(f"a) single-frame calls found {agreement['detections']} objects in the frame pool.")
    for batch_size, difference in agreement["max_difference"].items():
        verdict = ("different detections" if difference is None
                   else f"same detections, max box or score difference {difference:.2g}")
        print(f"a) batch {batch_size} against single-frame calls: {verdict}")


def print_json(facts: dict, settings: dict, comparisons: list[Comparison], agreement: dict) -> None:
    results = [{**asdict(item), "ratio": item.ratio} for item in comparisons]
    print(json.dumps({"machine": facts, "settings": settings, "results": results,
                      "batched_vs_single": agreement}, indent=2))


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"frames decoded from the two clips together, at least {max(BATCH_SIZES)} "
                             f"(default {DEFAULT_FRAMES})")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"timed runs per side of each comparison, after {WARMUP_RUNS} warm-up runs "
                             f"(default {DEFAULT_REPEATS})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.frames < max(BATCH_SIZES):
        parser.error(f"--frames must be at least {max(BATCH_SIZES)}, the largest batch size; got {args.frames}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {args.repeats}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_environment()
    try:
        frames = load_frames(args.frames)
        detector_spec = build_detector(1).spec
    except AssetError as error:
        fail(str(error), EXIT_SETUP)
    verify_letterbox(frames, [detector_spec, IMAGENET_SPEC])

    started = time.perf_counter()
    batching, agreement = measure_batching(frames, args.repeats)
    letterbox = measure_letterbox(frames, detector_spec, args.repeats)
    calls_per_thread = len(frames) // 2
    threading_results = measure_threading(frames, calls_per_thread, args.repeats)
    settings = {
        "model": f"{MODEL_NAME}, CPUExecutionProvider",
        "frames": f"{len(frames)} from {', '.join(CLIP_NAMES)}, interleaved",
        "repeats": f"{args.repeats} timed + {WARMUP_RUNS} warm-up per side, median reported",
        "measured in": f"{time.perf_counter() - started:.1f} s",
    }

    comparisons = [*batching, letterbox, *threading_results]
    if args.json:
        print_json(machine_facts(), settings, comparisons, agreement)
    else:
        print_table(machine_facts(), settings, comparisons, agreement)


if __name__ == "__main__":
    main()
