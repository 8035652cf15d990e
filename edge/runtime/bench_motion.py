"""`edge bench motion`: detector calls per camera-minute with and without motion gating, on a static scene.

The scene is made from the source clip: a still frame, then a passage of the clip's own frames in which
something moves, then the last frame of that passage held still. Every frame gets fresh sensor noise and a
JPEG round trip before H.264 encoding, so the still parts vary from frame to frame as a real camera's do.

Both sides run in one pass over the same decoded frames: the ungated side sends every frame within max_fps
to a detector and tracker, and the gated side sends only what its MotionGate lets through, to a second
tracker. A frame that both sides send is detected once, since both would get the same result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from pydantic import ValidationError

from edge.config import loader
from edge.config.site import CameraConfig
from edge.ingest.bench import machine_facts
from edge.ingest.decode import frame_to_bgr
from edge.ingest.motion_gate import GateReason, MotionGate, count_gate_tracks
from edge.ingest.reader import FrameRateLimiter
from edge.models.manifest import AssetError, load_manifest, model_dirs, resolve_file
from edge.runtime.detector import Detector
from edge.track.tracker import Tracker

SENSOR_NOISE_SIGMA = 3.0  # grey levels, a typical street camera at dusk after its own denoising
JPEG_QUALITY = 70
GOP = 50


class BenchError(Exception):
    """The clip or the model cannot be used for the bench."""


@dataclass(frozen=True)
class SceneLayout:
    """Position of the passage in the made clip, and its start in the source, in seconds."""

    seconds: float
    fps: float
    passage_start_s: float
    passage_s: float
    source_from_s: float


@dataclass
class SideResult:
    label: str
    detector_calls: int = 0
    calls_per_camera_minute: float = 0.0
    static_calls: int = 0  # calls on the still frames before and after the passage
    passage_calls: int = 0
    passage_frames_with_detections: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class BenchResult:
    source: str
    layout: SceneLayout
    max_fps: float
    motion_threshold: float
    keepalive_interval_s: float
    frames_decoded: int
    frames_admitted: int
    passage_frames: int
    sides: list[SideResult]
    calls_ratio: float | None  # ungated calls / gated calls, or None when the gated side made no call
    static_calls_ratio: float | None  # the same on the still parts
    measure_cpu_us_median: float
    measure_cpu_us_p95: float
    detector_wall_ms_median: float
    frame_width: int
    frame_height: int


def noisy(frame_bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return the frame with Gaussian sensor noise and the artefacts of one JPEG round trip."""
    noise = rng.standard_normal(size=frame_bgr.shape, dtype=np.float32) * np.float32(SENSOR_NOISE_SIGMA)
    noisy_bgr = np.clip(frame_bgr + noise, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", noisy_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise BenchError("JPEG encoding of a scene frame failed")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def read_source_frames(source: Path, from_s: float, passage_s: float) -> tuple[list[np.ndarray], Fraction]:
    """Decode the source frames from `from_s` to `from_s + passage_s`, both ends included."""
    try:
        container = av.open(str(source))
    except av.error.FFmpegError as error:
        raise BenchError(f"cannot open {source}: {error}; give a video file") from error
    with container:
        if not container.streams.video:
            raise BenchError(f"{source} has no video stream; give a video file")
        stream = container.streams.video[0]
        fps = stream.average_rate or Fraction(25)
        frames = []
        for index, frame in enumerate(container.decode(stream)):
            time_s = float(frame.time) if frame.time is not None else index / float(fps)
            if time_s + 1e-6 < from_s:
                continue
            frames.append(frame_to_bgr(frame))
            if time_s >= from_s + passage_s:
                break
    if len(frames) < 2:
        raise BenchError(f"{source} has no frames from {from_s:g} s on; lower --passage-from")
    return frames, fps


def make_scene_clip(source: Path, target: Path, seconds: float, passage_from_s: float, passage_s: float,
                    seed: int = 0) -> SceneLayout:
    """Write an H.264 clip of `seconds`: still, passage of the source starting at `passage_from_s`, still.

    The passage starts at 40 % of the clip. The first still is the source frame at `passage_from_s`, the
    second is the last frame of the passage, so the scene never jumps.
    """
    source_frames, fps = read_source_frames(source, passage_from_s, passage_s)
    fps_value = float(fps)
    total = max(1, round(seconds * fps_value))
    passage_frames = len(source_frames) - 1
    passage_start = min(round(0.4 * total), max(0, total - passage_frames))
    rng = np.random.default_rng(seed)
    height, width = source_frames[0].shape[:2]
    with av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={
            "g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0", "preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(total):
            offset = index - passage_start
            if offset < 0:
                picture = source_frames[0]
            elif offset < passage_frames:
                picture = source_frames[offset]
            else:
                picture = source_frames[-1]
            frame = av.VideoFrame.from_ndarray(noisy(picture, rng), format="bgr24").reformat(format="yuv420p")
            frame.pts = index
            frame.time_base = 1 / fps
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return SceneLayout(seconds=total / fps_value, fps=fps_value, passage_start_s=passage_start / fps_value,
                       passage_s=min(passage_frames, total - passage_start) / fps_value,
                       source_from_s=passage_from_s)


def load_detector(providers: list[str]) -> Detector:
    stage = loader.load_pipeline("detect", loader.DEFAULT_PIPELINE_DIR).detect
    try:
        entry = load_manifest().model(stage.model)
        return Detector(entry, resolve_file(entry, model_dirs()), stage, providers)
    except AssetError as error:
        raise BenchError(f"{error}; set EDGE_MODEL_DIR to the folder with the models") from error


def run_bench(clip: Path, layout: SceneLayout, camera: CameraConfig, detector: Detector) -> BenchResult:
    ungated = SideResult("without gating")
    gated = SideResult("with gating")
    ungated_tracker, gated_tracker = Tracker(), Tracker()
    gate_tracks = [0]
    gate = MotionGate(camera, lambda: gate_tracks[0])
    limiter = FrameRateLimiter(camera.max_fps)
    measure_us: list[float] = []
    detect_ms: list[float] = []
    frames_decoded = frames_admitted = passage_frames = 0
    size = (0, 0)
    passage_end_s = layout.passage_start_s + layout.passage_s
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames_decoded += 1
            media_time_s = float(frame.time or 0.0)
            if not limiter.admit(media_time_s):
                continue
            frames_admitted += 1
            frame_bgr = frame_to_bgr(frame)
            size = (frame_bgr.shape[1], frame_bgr.shape[0])
            in_passage = layout.passage_start_s <= media_time_s < passage_end_s
            passage_frames += in_passage

            started = time.thread_time()
            reason = gate.check(frame_bgr, media_time_s)
            measure_us.append(1e6 * (time.thread_time() - started))

            started = time.perf_counter()
            detections = detector.detect([frame_bgr])[0]
            detect_ms.append(1000 * (time.perf_counter() - started))
            ungated_tracker.update(detections)
            _count_call(ungated, in_passage, len(detections))
            if reason is not GateReason.GATED:
                gated_tracker.update(detections)
                gate_tracks[0] = count_gate_tracks(gated_tracker.tracks)
                _count_call(gated, in_passage, len(detections))

    if frames_admitted == 0:
        raise BenchError(f"{clip} gave no frames; give a longer clip or a higher --seconds")
    camera_minutes = layout.seconds / 60
    for side in (ungated, gated):
        side.calls_per_camera_minute = round(side.detector_calls / camera_minutes, 1)
    gated.reasons = {reason.value: count for reason, count in gate.reasons.items()}
    ungated.reasons = {"every frame": frames_admitted}
    return BenchResult(
        source=str(clip), layout=layout, max_fps=camera.max_fps, motion_threshold=camera.motion_threshold,
        keepalive_interval_s=camera.keepalive_interval_s, frames_decoded=frames_decoded,
        frames_admitted=frames_admitted, passage_frames=passage_frames, sides=[ungated, gated],
        calls_ratio=calls_ratio(ungated.detector_calls, gated.detector_calls),
        static_calls_ratio=calls_ratio(ungated.static_calls, gated.static_calls),
        # The first call compiles the kernels, so it is left out.
        measure_cpu_us_median=round(statistics.median(measure_us[1:] or measure_us), 1),
        measure_cpu_us_p95=round(float(np.percentile(measure_us[1:] or measure_us, 95)), 1),
        detector_wall_ms_median=round(statistics.median(detect_ms), 2),
        frame_width=size[0], frame_height=size[1],
    )


def calls_ratio(ungated_calls: int, gated_calls: int) -> float | None:
    """Return ungated over gated detector calls, or None when the gated side made no call to divide by."""
    return round(ungated_calls / gated_calls, 2) if gated_calls else None


def _count_call(side: SideResult, in_passage: bool, detection_count: int) -> None:
    side.detector_calls += 1
    if in_passage:
        side.passage_calls += 1
        side.passage_frames_with_detections += detection_count > 0
    else:
        side.static_calls += 1


def format_table(result: BenchResult) -> str:
    layout = result.layout
    lines = [f"{key + ':':12s}{value}" for key, value in machine_facts().items()]
    lines.append(f"{'scene:':12s}{layout.seconds:g} s at {layout.fps:g} fps, {result.frame_width}x"
                 f"{result.frame_height}, still except a passage of {layout.passage_s:g} s from "
                 f"{layout.passage_start_s:g} s (source frames from {layout.source_from_s:g} s)")
    lines.append(f"{'gate:':12s}max_fps {result.max_fps:g}, motion_threshold {result.motion_threshold:g}, "
                 f"keepalive_interval_s {result.keepalive_interval_s:g}")
    lines.append(f"{'frames:':12s}{result.frames_decoded} decoded, {result.frames_admitted} within max_fps, "
                 f"{result.passage_frames} of them in the passage")
    lines.append("")
    header = ("side", "calls", "calls/min", "static", "passage", "passage with dets", "sent because")
    rows = [header]
    for side in result.sides:
        reasons = ", ".join(f"{name} {count}" for name, count in sorted(side.reasons.items()))
        rows.append((side.label, str(side.detector_calls), f"{side.calls_per_camera_minute:.1f}",
                     str(side.static_calls), str(side.passage_calls), str(side.passage_frames_with_detections),
                     reasons))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join([row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:-1])]
                               + [row[-1]]))
    lines.append("")
    lines.append(f"detector calls without / with gating: {format_ratios(result)}")
    lines.append(f"motion measure: {result.measure_cpu_us_median:.0f} us CPU per frame (median, p95 "
                 f"{result.measure_cpu_us_p95:.0f} us); detector: {result.detector_wall_ms_median:.1f} ms wall "
                 "per call (median)")
    return "\n".join(lines)


def format_ratios(result: BenchResult) -> str:
    """Format both call ratios, or the reason for each one that has no gated calls to divide by."""
    if result.calls_ratio is None:
        overall = "not measured overall, because gating sent no frame to the detector"
    else:
        overall = f"{result.calls_ratio:.2f}x overall"
    still_calls = result.sides[0].static_calls
    if result.static_calls_ratio is not None:
        still = f"{result.static_calls_ratio:.2f}x on the still parts"
    elif still_calls == 0:
        still = ("not measured on the still parts, because the scene has none; use a longer --seconds or a "
                 "shorter --passage-s")
    else:
        still = (f"not measured on the still parts, because gating sent none of their {still_calls} frames to "
                 "the detector")
    return f"{overall}, {still}"


# The options of this command that set a CameraConfig field, by field name.
CAMERA_OPTIONS = {"source": "--source", "max_fps": "--max-fps", "motion_threshold": "--motion-threshold",
                  "keepalive_interval_s": "--keepalive-interval-s"}


def describe_setting_errors(error: ValidationError, args: argparse.Namespace) -> list[str]:
    """Turn the validation errors of the bench camera into one line each, naming the option and its value."""
    messages = []
    for detail in error.errors(include_url=False):
        message = detail["msg"].removeprefix("Value error, ")
        if not detail["loc"]:
            # The only check across fields that these options can fail: keepalive_interval_s against max_fps.
            messages.append(f"invalid --keepalive-interval-s {camera_value(args.keepalive_interval_s)} with "
                            f"--max-fps {camera_value(args.max_fps)}: {message}")
            continue
        field_name = str(detail["loc"][0])
        option = CAMERA_OPTIONS.get(field_name, field_name)
        bounds = describe_bounds(field_name)
        allowed = f"expected a number {bounds}, the range of the camera's {field_name}" if bounds else message
        messages.append(f"invalid {option} {camera_value(detail['input'])}: {allowed}")
    return messages


def describe_bounds(field_name: str) -> str | None:
    """Describe the numeric bounds of a CameraConfig field, such as 'above 0 and at most 60'."""
    words = {"gt": "above", "ge": "at least", "lt": "below", "le": "at most"}
    parts = []
    for constraint in CameraConfig.model_fields[field_name].metadata:
        for attribute, word in words.items():
            limit = getattr(constraint, attribute, None)
            if limit is not None:
                parts.append(f"{word} {limit:g}")
    return " and ".join(parts) or None


def camera_value(value: object) -> str:
    """Format an option value as typed: 0 rather than 0.0, and (default) when the option was not given."""
    if value is None:
        return "(default)"
    return f"{value:g}" if isinstance(value, float) else str(value)


def cmd_bench_motion(args: argparse.Namespace) -> int:
    try:
        camera = CameraConfig(id="bench", name="bench", source=str(args.source), max_fps=args.max_fps,
                              motion_gating=True, **({"motion_threshold": args.motion_threshold}
                                                     if args.motion_threshold is not None else {}),
                              **({"keepalive_interval_s": args.keepalive_interval_s}
                                 if args.keepalive_interval_s is not None else {}))
    except ValidationError as error:
        for message in describe_setting_errors(error, args):
            print(f"bench failed: {message}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edge-bench-motion-") as workdir:
        try:
            clip = Path(workdir) / "static-scene.mp4"
            layout = make_scene_clip(args.source, clip, args.seconds, args.passage_from, args.passage_s)
            detector = load_detector(args.providers)
            result = run_bench(clip, layout, camera, detector)
        except BenchError as error:
            print(f"bench failed: {error}", file=sys.stderr)
            return 2
    result.source = str(args.source)
    if args.json:
        print(json.dumps({"machine": machine_facts(), **asdict(result)}, indent=2))
    else:
        print(format_table(result))
    return 0


def non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds of 0 or more")
    return value


def add_bench_motion_parser(bench_commands: argparse._SubParsersAction) -> None:
    from edge.cli import positive_seconds

    motion = bench_commands.add_parser("motion", help="detector calls with and without motion gating on a "
                                       "static scene made from a clip")
    motion.add_argument("--source", type=Path, required=True,
                        help="video file whose frames make the scene: a still frame, a passage, a still frame")
    motion.add_argument("--seconds", type=positive_seconds, default=60.0, metavar="N",
                        help="length of the made scene in seconds (default 60, one camera-minute)")
    motion.add_argument("--passage-from", type=non_negative_seconds, default=6.0, metavar="S",
                        help="source time in seconds where the passage starts; the first still frame is the "
                        "source frame there (default 6, just before a person walks into "
                        "one-by-one-person-detection.mp4)")
    motion.add_argument("--passage-s", type=positive_seconds, default=14.0, metavar="S",
                        help="length of the passage in seconds (default 14, until that person has left)")
    motion.add_argument("--max-fps", type=float, default=10.0, help="camera max_fps (default 10)")
    motion.add_argument("--motion-threshold", type=float, default=None,
                        help="camera motion_threshold (default: the config default)")
    motion.add_argument("--keepalive-interval-s", type=float, default=None,
                        help="camera keepalive_interval_s (default: the config default)")
    motion.add_argument("--providers", nargs="+", default=["cpu"], choices=["tensorrt", "cuda", "cpu"],
                        help="ONNX Runtime providers in order of preference (default: cpu)")
    motion.add_argument("--json", action="store_true", help="print the results as JSON")
    motion.set_defaults(handler=cmd_bench_motion)
