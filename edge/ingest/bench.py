"""`edge bench decode`: CPU seconds per camera-minute for each decode mode and BGR conversion size.

Every case decodes the same clip with one thread (no frame or slice threads, one swscale thread), so
time.thread_time of the calling thread is all the CPU the case costs. The reader itself decodes with
frame threads, which spreads the same work over cores and adds some overhead, so absolute numbers here
are a lower bound for the reader and the ratios between cases are what carries over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

from edge.machine import cpu_model
from edge.ingest.decode import configure_decoder, frame_to_bgr
from edge.ingest.reader import FrameRateLimiter

MIN_GOP = 25  # shorter GOPs make key frames too common for the keyframes case to mean much
REENCODE_GOP = 50


class BenchError(Exception):
    """The clip cannot be benchmarked."""


@dataclass(frozen=True)
class Case:
    label: str
    mode: str  # decode mode: all or keyframes
    max_fps: float | None
    convert_width: int | None  # None converts at full size


@dataclass
class CaseResult:
    label: str
    frames_decoded: int
    frames_converted: int
    decode_cpu_s_per_min: float
    convert_cpu_s_per_min: float
    total_cpu_s_per_min: float
    all_over_this: float = 0.0  # total of case 'all' divided by this case's total: how many times cheaper


@dataclass
class ClipInfo:
    path: str
    codec: str
    width: int
    height: int
    fps: float
    gop: int
    reencoded_from: str | None


def bench_cases(reduced_width: int) -> list[Case]:
    return [
        Case("all", "all", None, None),
        Case("all, max_fps 5", "all", 5.0, None),
        Case("keyframes", "keyframes", None, None),
        Case(f"all, BGR {reduced_width} px wide", "all", None, reduced_width),
    ]


def probe_clip(path: Path) -> ClipInfo:
    """Read codec, size, frame rate and the median distance between key frames of the first video stream."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        # The message without "[Errno N]", which for FFmpeg's own errors is a meaningless tag number.
        reason = error.strerror or type(error).__name__
        raise BenchError(f"cannot open {path}: {reason}; give a video file that FFmpeg can decode, such as "
                         "an MP4 or MKV clip") from error
    with container:
        if not container.streams.video:
            raise BenchError(f"{path} has no video stream; give a video file")
        stream = container.streams.video[0]
        key_positions = [index for index, packet in enumerate(p for p in container.demux(stream) if p.size)
                         if packet.is_keyframe]
        distances = [b - a for a, b in zip(key_positions, key_positions[1:])]
        fps = float(stream.average_rate or 25)
        gop = int(statistics.median(distances)) if distances else len(key_positions)
        return ClipInfo(str(path), stream.codec_context.name, stream.codec_context.width,
                        stream.codec_context.height, fps, gop, None)


def reencode(source: Path, target: Path, width: int, height: int, seconds: float) -> None:
    """Re-encode up to `seconds` of the source to H.264 at width x height with a key frame every 50 frames."""
    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        in_stream = src.streams.video[0]
        fps = in_stream.average_rate or Fraction(25)
        stream = out.add_stream("libx264", rate=fps, options={
            "g": str(REENCODE_GOP), "keyint_min": str(REENCODE_GOP), "sc_threshold": "0", "preset": "veryfast",
            "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, frame in enumerate(src.decode(in_stream)):
            if index >= seconds * float(fps):
                break
            picture = frame.reformat(width, height, "yuv420p")
            picture.pts = index
            picture.time_base = 1 / Fraction(fps)
            # reformat keeps the source's picture type, and an I picture would force an extra key frame.
            picture.pict_type = av.video.frame.PictureType.NONE
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))


def run_case(path: Path, case: Case, seconds: float) -> tuple[int, int, float, float, float]:
    """Decode `seconds` of media, looping the clip, and return frames decoded and converted, decode CPU s,
    conversion CPU s and media seconds covered."""
    frames_decoded = frames_converted = 0
    decode_s = convert_s = 0.0
    offset_s = 0.0
    limiter = FrameRateLimiter(case.max_fps) if case.max_fps else None
    while offset_s < seconds:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            configure_decoder(stream, case.mode, frame_threads=False)
            frame_interval_s = 1.0 / float(stream.average_rate or 25)
            pass_end_s = 0.0
            packets_in_pass = 0
            started = time.thread_time()
            for packet in container.demux(stream):
                if packet.pts is not None:
                    packet_time_s = float(packet.pts * packet.time_base)
                else:
                    packet_time_s = packets_in_pass * frame_interval_s
                window_ended = offset_s + packet_time_s >= seconds
                if window_ended:
                    # An empty packet drains the frames of earlier packets that the decoder still buffers for
                    # reordering, which in keyframes mode can be every frame of the pass. Unlike decode(None)
                    # in PyAV 18, it gives them their time base, so frame.time stays valid.
                    packet = av.Packet()
                    packet.time_base = stream.time_base
                else:
                    pass_end_s = max(pass_end_s, packet_time_s)
                    packets_in_pass += 1
                for frame in stream.decode(packet):
                    frames_decoded += 1
                    frame_time_s = offset_s + float(frame.time or 0.0)
                    if limiter is not None and not limiter.admit(frame_time_s):
                        continue
                    decode_s += time.thread_time() - started
                    started = time.thread_time()
                    frame_to_bgr(frame, case.convert_width)
                    convert_s += time.thread_time() - started
                    frames_converted += 1
                    started = time.thread_time()
                if window_ended:
                    break
            decode_s += time.thread_time() - started
            if packets_in_pass == 0:
                raise BenchError(f"{path} has no video packets to decode; give a longer clip")
            offset_s += pass_end_s + frame_interval_s
    return frames_decoded, frames_converted, decode_s, convert_s, min(offset_s, seconds)


def check_settings(args: argparse.Namespace, clip_name: str, width: int, gop: int, fps: float) -> None:
    """Raise BenchError for a --reduced-width or --seconds that would make a case measure other than its label."""
    if args.reduced_width >= width:
        # frame_to_bgr leaves frames that are not wider than the limit at full size.
        raise BenchError(f"--reduced-width {args.reduced_width} is not below the frame width of {clip_name} "
                         f"({width} px), so that case would convert at full size; give a width under {width}")
    gop_s = gop / fps
    if args.seconds < gop_s:
        raise BenchError(f"--seconds {args.seconds:g} is shorter than one key-frame interval of {clip_name} "
                         f"({gop} frames at {fps:g} fps, {gop_s:g} s), so the keyframes case would count one key "
                         f"frame in {args.seconds:g} s instead of one per {gop_s:g} s; use --seconds {gop_s:g} or more")


def run_bench(args: argparse.Namespace, workdir: Path) -> tuple[ClipInfo, list[CaseResult], list[str]]:
    notes: list[str] = []
    clip = probe_clip(args.source)
    if args.reencode or clip.gop < MIN_GOP:
        width, height = args.reencode or (1920, 1080)
        check_settings(args, f"{args.source.name} re-encoded to {width}x{height}", width, REENCODE_GOP, clip.fps)
        target = workdir / f"reencoded-{width}x{height}-gop{REENCODE_GOP}.mp4"
        if not args.reencode:
            notes.append(f"{args.source.name} has a key frame every {clip.gop} frames, under {MIN_GOP}; "
                         f"re-encoded it to H.264 {width}x{height} with GOP {REENCODE_GOP}")
        reencode(args.source, target, width, height, args.seconds)
        clip = probe_clip(target)
        clip.reencoded_from = str(args.source)
    else:
        check_settings(args, args.source.name, clip.width, clip.gop, clip.fps)

    cases = bench_cases(args.reduced_width)
    run_case(Path(clip.path), cases[0], min(2.0, args.seconds))  # warm-up: code paths and file cache
    samples: dict[str, list[tuple[int, int, float, float, float]]] = {case.label: [] for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            samples[case.label].append(run_case(Path(clip.path), case, args.seconds))

    results = []
    for case in cases:
        runs = samples[case.label]
        media_min = runs[0][4] / 60
        decode = statistics.median(run[2] for run in runs) / media_min
        convert = statistics.median(run[3] for run in runs) / media_min
        total = statistics.median((run[2] + run[3]) for run in runs) / media_min
        results.append(CaseResult(case.label, runs[0][0], runs[0][1], round(decode, 3), round(convert, 3),
                                  round(total, 3)))
    baseline = results[0].total_cpu_s_per_min
    for result in results:
        result.all_over_this = round(baseline / result.total_cpu_s_per_min, 2) if result.total_cpu_s_per_min else 0.0
    return clip, results, notes


def machine_facts() -> dict[str, str]:
    cpu = cpu_model()
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(), "av": av.__version__,
            "libavcodec": ".".join(map(str, av.library_versions["libavcodec"]))}


def format_table(clip: ClipInfo, results: list[CaseResult], args: argparse.Namespace, notes: list[str]) -> str:
    lines = [f"{key + ':':12s}{value}" for key, value in machine_facts().items()]
    lines.append(f"{'clip:':12s}{clip.path} ({clip.codec} {clip.width}x{clip.height}, {clip.fps:g} fps, "
                 f"key frame every {clip.gop} frames)")
    if clip.reencoded_from:
        lines.append(f"{'':12s}re-encoded from {clip.reencoded_from}")
    lines.append(f"{'measured:':12s}{args.seconds:g} s of media per case, median of {args.repeats} runs, "
                 "one decoding thread, CPU s = time.thread_time")
    lines += notes
    lines.append("")
    header = ("case", "decoded", "converted", "decode", "convert", "total", "all/this")
    rows = [header, ("", "frames", "frames", "CPU s/min", "CPU s/min", "CPU s/min", "")]
    for result in results:
        rows.append((result.label, str(result.frames_decoded), str(result.frames_converted),
                     f"{result.decode_cpu_s_per_min:.2f}", f"{result.convert_cpu_s_per_min:.2f}",
                     f"{result.total_cpu_s_per_min:.2f}", f"{result.all_over_this:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    lines.append("")
    lines.append("CPU s/min: CPU seconds per minute of camera video; all/this: how many times cheaper than 'all'.")
    return "\n".join(lines)


def cmd_bench_decode(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="edge-bench-decode-") as workdir:
        try:
            clip, results, notes = run_bench(args, Path(workdir))
        except BenchError as error:
            print(f"bench failed: {error}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps({"machine": machine_facts(), "clip": asdict(clip), "seconds": args.seconds,
                          "repeats": args.repeats, "notes": notes, "cases": [asdict(r) for r in results]}, indent=2))
    else:
        print(format_table(clip, results, args, notes))
    return 0


def _frame_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) >= 16 and int(height) >= 16):
        raise argparse.ArgumentTypeError(f"'{text}' is not a frame size such as 1920x1080")
    return int(width), int(height)


def add_bench_decode_parser(bench_commands: argparse._SubParsersAction) -> None:
    from edge.cli import positive_count, positive_seconds

    decode = bench_commands.add_parser("decode", help="CPU cost of decode modes and BGR conversion on a clip")
    decode.add_argument("--source", type=Path, required=True, help="video file to decode, looped as needed")
    decode.add_argument("--seconds", type=positive_seconds, default=60.0, metavar="N",
                        help="seconds of media decoded per case (default 60, one camera-minute)")
    decode.add_argument("--repeats", type=positive_count, default=3, help="runs per case; the median is shown "
                        "(default 3)")
    decode.add_argument("--reduced-width", type=positive_count, default=416, metavar="PX",
                        help="width of the reduced BGR conversion case (default 416, the yolox_nano_416 input)")
    decode.add_argument("--reencode", type=_frame_size, default=None, metavar="WxH",
                        help="first re-encode the clip to H.264 at this size with a key frame every 50 frames; "
                        f"done at 1920x1080 anyway when the clip's GOP is under {MIN_GOP}")
    decode.add_argument("--json", action="store_true", help="print the results as JSON")
    decode.set_defaults(handler=cmd_bench_decode)
