"""Soak test: run the daemon on a site config for a set time and watch its memory, file descriptors and threads.

The daemon runs as a child process (`python -m edge run --config CONFIG`). Every `--interval-s` seconds the
script reads the child's resident set size and thread count from /proc/PID/status, counts /proc/PID/fd and
reads its CPU time from /proc/PID/stat. At the end it stops the daemon with SIGTERM and prints the samples
and the growth per hour of each series. The growth is the slope of a least-squares line through the second
half of the samples, so that model loading and warm-up in the first half do not count. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.machine import cpu_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "demo.toml"
STOP_TIMEOUT_S = 30.0
STDERR_TAIL_CHARS = 3000


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    rss_mib: float
    fds: int
    threads: int
    cpu_s: float


def read_sample(pid: int, elapsed_s: float) -> Sample | None:
    """Read one sample of process `pid`; return None when the process is gone."""
    proc = Path("/proc") / str(pid)
    try:
        status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
        fds = len(os.listdir(proc / "fd"))
        # Fields 14 and 15 of /proc/PID/stat (user and system time in clock ticks) follow the command name,
        # which is in parentheses and may contain spaces, so count from the closing parenthesis.
        stat_fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss_kib = int(status["VmRSS"].split()[0])
    ticks = int(stat_fields[11]) + int(stat_fields[12])
    return Sample(elapsed_s=round(elapsed_s, 1), rss_mib=round(rss_kib / 1024, 1), fds=fds,
                  threads=int(status["Threads"]), cpu_s=round(ticks / os.sysconf("SC_CLK_TCK"), 2))


def slope_per_hour(xs_s: list[float], ys: list[float]) -> float | None:
    """Return the least-squares slope of ys over xs, in units per hour; None for fewer than 3 points."""
    if len(xs_s) < 3:
        return None
    mean_x = sum(xs_s) / len(xs_s)
    mean_y = sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs_s)
    if spread == 0:
        return None
    slope_per_s = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs_s, ys)) / spread
    return slope_per_s * 3600


def growth_per_hour(samples: list[Sample], duration_s: float) -> dict[str, float | None]:
    second_half = [s for s in samples if s.elapsed_s >= duration_s / 2]
    xs = [s.elapsed_s for s in second_half]
    return {
        "rss_mib": slope_per_hour(xs, [s.rss_mib for s in second_half]),
        "fds": slope_per_hour(xs, [s.fds for s in second_half]),
        "threads": slope_per_hour(xs, [s.threads for s in second_half]),
        "second_half_samples": len(second_half),
    }


def machine_facts() -> dict:
    cpu = cpu_model()
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version()}


def run_soak(config: Path, duration_s: float, interval_s: float, print_progress: bool) -> dict:
    data_dir = tempfile.mkdtemp(prefix="edge-soak-")
    # The outbox and watchlist database of the run go to a throw-away folder, not into the working tree.
    env = {**os.environ, "EDGE_DATA_DIR": data_dir}
    stderr_path = Path(data_dir) / "daemon.log"
    command = [sys.executable, "-m", "edge", "run", "--config", str(config)]
    with stderr_path.open("w", encoding="utf-8") as stderr_file:
        daemon = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True, env=env,
                                  cwd=PROJECT_ROOT)
        started = time.monotonic()
        samples: list[Sample] = []
        next_sample = started
        while time.monotonic() - started < duration_s and daemon.poll() is None:
            sample = read_sample(daemon.pid, time.monotonic() - started)
            if sample is not None:
                samples.append(sample)
                if print_progress:
                    print(f"{sample.elapsed_s:8.1f} s  rss {sample.rss_mib:8.1f} MiB  fds {sample.fds:4d}  "
                          f"threads {sample.threads:3d}", file=sys.stderr)
            next_sample += interval_s
            time.sleep(max(0.0, next_sample - time.monotonic()))
        ran_s = time.monotonic() - started
        exited_early = daemon.poll() is not None
        if not exited_early:
            daemon.send_signal(signal.SIGTERM)
        stop_started = time.monotonic()
        try:
            counters_table, _ = daemon.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            daemon.kill()
            counters_table, _ = daemon.communicate()
        stop_s = time.monotonic() - stop_started
    stderr_text = stderr_path.read_text(encoding="utf-8", errors="replace")
    return {
        "machine": machine_facts(),
        "command": " ".join(command),
        "config": str(config),
        "duration_s": duration_s,
        "interval_s": interval_s,
        "ran_s": round(ran_s, 1),
        "exited_early": exited_early,
        "returncode": daemon.returncode,
        "stop_s": round(stop_s, 1),
        "samples": [asdict(s) for s in samples],
        "growth_per_hour": growth_per_hour(samples, duration_s),
        "counters": counters_table.strip(),
        "stderr_tail": stderr_text[-STDERR_TAIL_CHARS:] if exited_early or daemon.returncode else "",
    }


def format_report(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"machine:   {machine['cpu']}, {machine['logical_cores']} logical cores, kernel {machine['kernel']}, "
        f"Python {machine['python']}",
        f"command:   {report['command']}",
        f"ran:       {report['ran_s']} s of {report['duration_s']:g} s, a sample every {report['interval_s']:g} s",
        f"stop:      exit code {report['returncode']} {report['stop_s']} s after SIGTERM"
        + (" (the daemon exited before the end)" if report["exited_early"] else ""),
        "",
        f"{'elapsed_s':>9}  {'rss_mib':>8}  {'fds':>4}  {'threads':>7}  {'cpu_s':>8}",
    ]
    for sample in report["samples"]:
        lines.append(f"{sample['elapsed_s']:9.1f}  {sample['rss_mib']:8.1f}  {sample['fds']:4d}  "
                     f"{sample['threads']:7d}  {sample['cpu_s']:8.2f}")
    growth = report["growth_per_hour"]

    def rate(value: float | None, unit: str) -> str:
        return "not enough samples" if value is None else f"{value:+.1f} {unit}/h"

    lines += [
        "",
        f"growth per hour, least-squares line through the {growth['second_half_samples']} samples of the "
        "second half:",
        f"  rss:     {rate(growth['rss_mib'], 'MiB')}",
        f"  fds:     {rate(growth['fds'], 'fds')}",
        f"  threads: {rate(growth['threads'], 'threads')}",
        "",
        "daemon counters at the stop:",
        report["counters"] or "(none printed)",
    ]
    if report["stderr_tail"]:
        lines += ["", "daemon log, last lines:", report["stderr_tail"]]
    return "\n".join(lines)


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="site config to run (default: config/demo.toml)")
    parser.add_argument("--duration-s", type=positive_seconds, default=600.0,
                        help="seconds to run the daemon before SIGTERM (default 600)")
    parser.add_argument("--interval-s", type=positive_seconds, default=10.0,
                        help="seconds between two samples (default 10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    args = parser.parse_args()

    if not Path("/proc/self/status").exists():
        print("soak.py reads /proc and runs on Linux only", file=sys.stderr)
        return 2
    missing = [name for name in ("EDGE_MODEL_DIR", "EDGE_MEDIA_DIR") if not os.environ.get(name)]
    if missing and args.config == DEFAULT_CONFIG:
        print(f"set {' and '.join(missing)}: the demo config needs yolox_nano_416.onnx from EDGE_MODEL_DIR and "
              "its two clips from EDGE_MEDIA_DIR", file=sys.stderr)
        return 2

    report = run_soak(args.config, args.duration_s, args.interval_s, print_progress=not args.json)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    completed = not report["exited_early"] and report["returncode"] == 0
    return 0 if completed else 1


if __name__ == "__main__":
    sys.exit(main())
