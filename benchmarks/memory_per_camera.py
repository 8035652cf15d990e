"""Measure the daemon's resident memory with 1, 4 and 8 cameras reading a 1080p H.264 file, and the MiB per camera.

The script re-encodes a clip to H.264 1920x1080 with a key frame every 50 frames, with the encoder settings
of `edge bench decode --reencode`. For each camera count it writes a site config in which every camera
replays that file in real time on the `detect` pipeline, and runs `python -m edge run` as a child process. It
reads VmRSS from /proc/PID/status once per `--interval-s`, discards the first `--warmup-s` (model loading,
first decoded frames, allocator growth) and keeps the median of the rest. The MiB per added camera is the
slope of a least-squares line through (cameras, median RSS). Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 30.0
STDERR_TAIL_CHARS = 3000


class MemoryBenchError(Exception):
    """The measurement cannot run; the message states what to fix."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_rss_mib(pid: int) -> tuple[float, int] | None:
    """Return (VmRSS in MiB, thread count) of process `pid`, or None when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    if "VmRSS" not in status:
        return None  # a zombie has no memory fields
    return int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"])


def write_site_config(folder: Path, clip: Path, cameras: int, max_fps: float) -> Path:
    lines = ['box_id = "memory-bench"', ""]
    for index in range(cameras):
        lines += [
            "[[cameras]]",
            f'id = "cam-{index:02d}"',
            f'name = "1080p replay {index}"',
            f'source = "{clip}"',
            'pipeline = "detect"',
            f"max_fps = {max_fps:g}",
            "realtime = true",
            "loop = true",
            "",
        ]
    lines += [
        "[publisher]",
        f'endpoint = "tcp://127.0.0.1:{free_port()}"',
        f'replay_endpoint = "tcp://127.0.0.1:{free_port()}"',
        'outbox_path = "outbox.sqlite"',
        "",
        "[metrics]",
        "enabled = false",
        "",
    ]
    path = folder / f"site-{cameras}.toml"
    path.write_text("\n".join(lines))
    return path


def measure(config: Path, duration_s: float, warmup_s: float, interval_s: float, env: dict[str, str]) -> dict:
    """Run the daemon for `duration_s` and return the median and peak RSS after the warm-up."""
    command = [sys.executable, "-m", "edge", "--log-level", "WARNING", "run", "--config", str(config)]
    stderr_path = config.with_suffix(".stderr")
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        started = time.monotonic()
        samples: list[tuple[float, float, int]] = []
        try:
            while time.monotonic() - started < duration_s:
                sample = read_rss_mib(process.pid)
                if sample is None or process.poll() is not None:
                    tail = stderr_path.read_text()[-STDERR_TAIL_CHARS:]
                    raise MemoryBenchError(f"the daemon exited early with status {process.poll()}:\n{tail}")
                samples.append((time.monotonic() - started, *sample))
                time.sleep(interval_s)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    steady = [rss for elapsed, rss, _ in samples if elapsed >= warmup_s]
    if not steady:
        raise MemoryBenchError(f"no sample after the {warmup_s:g} s warm-up; raise --duration-s")
    return {"median_rss_mib": round(statistics.median(steady), 1), "peak_rss_mib": round(max(steady), 1),
            "threads": samples[-1][2], "samples": len(steady)}


def slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
            / sum((x - mean_x) ** 2 for x in xs))


def find_clip(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    media = os.environ.get("EDGE_MEDIA_DIR")
    if not media:
        raise MemoryBenchError("set EDGE_MEDIA_DIR to the folder with car-detection.mp4, or pass --source CLIP")
    for candidate in (Path(media) / "car-detection.mp4", Path(media) / "videos" / "car-detection.mp4"):
        if candidate.is_file():
            return candidate
    raise MemoryBenchError(f"car-detection.mp4 not found in {media} or {media}/videos; pass --source CLIP")


def run(args: argparse.Namespace) -> dict:
    import av

    from edge.ingest.bench import reencode

    if not os.environ.get("EDGE_MODEL_DIR"):
        raise MemoryBenchError("set EDGE_MODEL_DIR to the folder with yolox_nano_416.onnx, the detect pipeline's model")
    source = find_clip(args.source)
    folder = Path(tempfile.mkdtemp(prefix="edge-memory-"))
    clip = folder / "clip_1920x1080.mp4"
    print(f"re-encoding {source} to H.264 1920x1080 in {clip} ...", file=sys.stderr, flush=True)
    reencode(source, clip, 1920, 1080, args.clip_seconds)
    env = {**os.environ, "EDGE_DATA_DIR": str(folder)}

    counts = args.cameras
    rows: dict[int, list[dict]] = {count: [] for count in counts}
    for repeat in range(args.repeats):
        # Every second repeat runs the counts in reverse, so a drift of the machine does not follow the count.
        order = counts if repeat % 2 == 0 else list(reversed(counts))
        for count in order:
            config = write_site_config(folder, clip, count, args.max_fps)
            result = measure(config, args.duration_s, args.warmup_s, args.interval_s, env)
            rows[count].append(result)
            print(f"{count} cameras: median RSS {result['median_rss_mib']} MiB, peak {result['peak_rss_mib']} MiB, "
                  f"{result['threads']} threads", file=sys.stderr, flush=True)

    medians = {count: statistics.median(r["median_rss_mib"] for r in results) for count, results in rows.items()}
    xs = [float(count) for count in counts]
    per_camera = slope(xs, [medians[count] for count in counts])
    return {
        "machine": {"python": platform.python_version(), "kernel": platform.release(), "cores": os.cpu_count(),
                    "av": av.__version__},
        "clip": f"{source.name} re-encoded to H.264 1920x1080, GOP 50, {args.clip_seconds:g} s",
        "settings": {"max_fps": args.max_fps, "duration_s": args.duration_s, "warmup_s": args.warmup_s,
                     "repeats": args.repeats},
        "runs": {str(count): results for count, results in rows.items()},
        "median_rss_mib": {str(count): value for count, value in medians.items()},
        "mib_per_camera": round(per_camera, 1),
        "intercept_mib": round(statistics.fmean(medians.values()) - per_camera * statistics.fmean(xs), 1),
    }


def print_table(report: dict) -> None:
    print(f"clip:      {report['clip']}")
    print(f"settings:  {report['settings']}")
    print(f"machine:   {report['machine']}")
    print()
    print(f"{'cameras':>7} {'median RSS MiB':>15} {'peak RSS MiB':>13} {'threads':>8}")
    for count, results in report["runs"].items():
        for result in results:
            print(f"{count:>7} {result['median_rss_mib']:>15} {result['peak_rss_mib']:>13} {result['threads']:>8}")
    print()
    print(f"MiB per added camera (least-squares slope over the medians): {report['mib_per_camera']}")
    print(f"RSS extrapolated to 0 cameras (models, libraries, interpreter): {report['intercept_mib']} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="clip to re-encode (default: car-detection.mp4 in EDGE_MEDIA_DIR)")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 8], help="camera counts (default 1 4 8)")
    parser.add_argument("--max-fps", type=float, default=5.0, help="max_fps of every camera (default 5)")
    parser.add_argument("--duration-s", type=float, default=40.0, help="seconds each daemon runs (default 40)")
    parser.add_argument("--warmup-s", type=float, default=20.0, help="seconds discarded at the start (default 20)")
    parser.add_argument("--interval-s", type=float, default=1.0, help="seconds between RSS samples (default 1)")
    parser.add_argument("--clip-seconds", type=float, default=30.0, help="seconds of the clip re-encoded (default 30)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per camera count (default 1)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if len(args.cameras) < 2:
        parser.error("--cameras needs at least two counts to fit a slope")
    try:
        report = run(args)
    except MemoryBenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
