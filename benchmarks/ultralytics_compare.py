"""Compare how many cameras per CPU core this project's pipeline and Ultralytics sustain at one analysis rate.

Licence: Ultralytics is AGPL-3.0. Only the worker processes of this script import it, and they run in
the benchmark's own virtual environment (benchmarks/requirements-ultralytics.txt, default
/tmp/venv-ultralytics). The `edge` package and its tests never import Ultralytics, and this script
imports neither it nor `edge` in the driver process.

Three systems read the same RTSP streams and run the same network, yolov8n built from Ultralytics'
YAML with random weights (nothing is downloaded), at `--target-fps` detections per second per camera:

  ultralytics-pt    Ultralytics' multi-stream prediction (LoadStreams + predictor) on its PyTorch model
  ultralytics-onnx  the same, on the ONNX file exported from that model
  edge              CameraReader threads + BatchScheduler + Detector + tracker (PipelineRunner) on the same
                    ONNX file, in the project's virtual environment

Every stream is one H.264 clip at `--stream-fps` served by tests/support/rtsp_server.py on 127.0.0.1, so
both sides decode every frame in real time (Ultralytics grabs every frame and keeps every `vid_stride`-th;
the edge reader decodes every frame and keeps `max_fps` of them).

Each trial runs one system on N cameras and measures the worker's CPU time, the analysed frames and the
decoded frames per camera. The trials sweep `--counts`, with the systems interleaved in rotating order,
and repeat `--repeats` times. Two figures come out per system:

  largest count   the largest N at which every camera got at least 90% of the target rate and was decoded
                  at 95% or more of the stream rate, divided by the cores used there. It needs idle cores:
                  on a machine that other work starves of CPU, every system misses the rate.
  cost fit        a least-squares fit over all trials of  cores = N * d + analysed frames/s * c,  where d is
                  the CPU of one camera's stream handling (decoding every frame) and c the CPU of one analysed
                  frame. Cameras per core at the target rate r is then 1 / (d + r * c). CPU time per unit of
                  work changes little when the process waits for a core, so this figure holds on a shared
                  machine where the first does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RTSP_SERVER = PROJECT_ROOT / "tests" / "support" / "rtsp_server.py"
SYSTEMS = ("ultralytics-pt", "ultralytics-onnx", "edge")
# The classes of pipelines/detect.toml, as COCO indices for Ultralytics' `classes` argument.
DETECT_CLASSES = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
DETECT_CLASS_IDS = [0, 1, 2, 3, 5, 7]
SCORE_THRESHOLD = 0.25
NMS_IOU_THRESHOLD = 0.45
MODEL_IMGSZ = 640  # Ultralytics' default for yolov8n; 1280x720 frames letterbox to 640x384 (rectangular)
ANALYSIS_SHARE = 0.90  # share of the target analysis rate that every camera must get
DECODE_SHARE = 0.95  # share of the stream frame rate that every camera must be decoded at
TRIAL_TIMEOUT_MARGIN_S = 90.0  # start-up time allowed on top of warm-up and measurement
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


class CompareError(Exception):
    """The comparison cannot run; the message states what to fix."""


# ---------------------------------------------------------------------------------------------------------
# Network guard, used by the Ultralytics workers.


def block_remote_network(attempts: list[str]) -> None:
    """Make every connection and name lookup to a host other than loopback fail, and record it in `attempts`.

    Ultralytics reaches the network for weights, fonts, settings sync and online checks. The environment
    set by `ultralytics_environment` turns those off. This guard checks that: any attempt that is left
    appears in the worker's report and never leaves the machine.
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def is_remote(address) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        return isinstance(host, str) and host not in LOOPBACK_HOSTS and not host.startswith("/")

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and is_remote(address):
            attempts.append(f"connect {address}")
            raise OSError(f"connection to {address} blocked by ultralytics_compare.py")
        return real_connect(sock, address)

    def guarded_connect_ex(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and is_remote(address):
            attempts.append(f"connect {address}")
            return 111  # ECONNREFUSED
        return real_connect_ex(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host is not None and host not in LOOPBACK_HOSTS:
            attempts.append(f"lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"lookup of {host} blocked by ultralytics_compare.py")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo


def ultralytics_environment(config_dir: Path) -> dict[str, str]:
    """Return environment settings that keep Ultralytics offline and quiet, with its settings file in `config_dir`."""
    return {
        "YOLO_OFFLINE": "1",  # is_online() returns False without a DNS lookup
        "YOLO_AUTOINSTALL": "false",  # check_requirements() must not run pip for a missing package
        "YOLO_CONFIG_DIR": str(config_dir),  # settings.json here, not in the user's home
        "YOLO_VERBOSE": "false",
        "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;tcp",  # the same transport as the edge reader
    }


def disable_ultralytics_sync() -> None:
    from ultralytics import settings

    settings.update({"sync": False})


# ---------------------------------------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON object on stdout.


def process_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def worker_prepare_clip(args: argparse.Namespace) -> dict:
    """Re-encode the source clip to H.264 at the stream size and rate (project venv: needs PyAV)."""
    from fractions import Fraction

    import av

    width, height = parse_size(args.size)
    target = Path(args.out)
    frames_wanted = int(args.seconds * args.fps)
    written = 0
    with av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=args.fps, options={
            "g": "50", "keyint_min": "50", "sc_threshold": "0", "preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # The clip is replayed frame by frame at the new rate until it fills `seconds`. A 12.5 fps clip
        # therefore plays at double speed, which changes the motion but not the decoding work per frame.
        while written < frames_wanted:
            with av.open(args.source) as source:
                for frame in source.decode(source.streams.video[0]):
                    if written >= frames_wanted:
                        break
                    picture = frame.reformat(width, height, "yuv420p")
                    picture.pts = written
                    picture.time_base = Fraction(1, args.fps)
                    # reformat keeps the source's picture type, and an I picture would force an extra key frame.
                    picture.pict_type = av.video.frame.PictureType.NONE
                    out.mux(stream.encode(picture))
                    written += 1
            if written == 0:
                raise CompareError(f"no frames decoded from {args.source}; give a readable video clip")
        out.mux(stream.encode(None))
    return {"clip": str(target), "frames": written, "size": args.size, "fps": args.fps, "av": av.__version__}


def worker_export(args: argparse.Namespace) -> dict:
    """Build yolov8n from its YAML (random weights), export it to ONNX, and fix the input to one frame size."""
    attempts: list[str] = []
    block_remote_network(attempts)
    work_dir = Path(args.out).parent
    files_before = set(work_dir.rglob("*"))
    disable_ultralytics_sync()
    import onnx
    import torch
    import ultralytics
    from ultralytics import YOLO

    torch.manual_seed(0)  # the same random weights for every run
    model = YOLO("yolov8n.yaml", task="detect")
    torch.save({"state_dict": model.model.state_dict()}, work_dir / "yolov8n_random_state.pt")
    # dynamic=True keeps the batch dimension free, which batching across cameras needs on both sides.
    exported = Path(model.export(format="onnx", imgsz=MODEL_IMGSZ, dynamic=True, simplify=True, device="cpu"))

    # The dynamic export also frees height and width. The project's Detector probes a free-size graph with
    # a 1x1 frame to test batching, which this graph rejects, so it would run one frame per call. Fixing
    # the input to the letterboxed size of the streams keeps both sides on the same tensor shape.
    graph = onnx.load(str(exported))
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = args.height, args.width
    onnx.checker.check_model(graph)
    onnx.save(graph, args.out)
    return {
        "onnx": args.out,
        "input": [d.dim_param or d.dim_value for d in dims],
        "network_attempts": attempts,
        "new_files": sorted(str(p.relative_to(work_dir)) for p in set(work_dir.rglob("*")) - files_before),
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "onnx_version": onnx.__version__,
    }


def worker_ultralytics(args: argparse.Namespace) -> dict:
    """Run Ultralytics' stream prediction on `cameras` RTSP streams and measure one window."""
    attempts: list[str] = []
    block_remote_network(attempts)
    disable_ultralytics_sync()
    import cv2
    import torch
    import ultralytics
    from ultralytics import YOLO

    grabs: list[int] = []

    class CountingCapture(cv2.VideoCapture):
        """A VideoCapture that counts grab() calls: LoadStreams grabs, so decodes, every frame."""

        def __init__(self, *capture_args):
            super().__init__(*capture_args)
            self.index = len(grabs)
            grabs.append(0)

        def grab(self):
            grabs[self.index] += 1
            return super().grab()

    cv2.VideoCapture = CountingCapture  # LoadStreams looks the class up on the cv2 module at call time

    if args.backend == "pt":
        import ultralytics.nn.tasks  # noqa: F401 - registers the model classes before loading the state dict

        torch.manual_seed(0)
        model = YOLO("yolov8n.yaml", task="detect")
        state = torch.load(args.model, weights_only=True)["state_dict"]
        model.model.load_state_dict(state)
    else:
        model = YOLO(args.model, task="detect")

    streams_file = Path(tempfile.mkstemp(suffix=".streams")[1])
    streams_file.write_text("".join(f"{url}\n" for url in args.urls))
    results = model.predict(source=str(streams_file), stream=True, vid_stride=args.vid_stride, imgsz=MODEL_IMGSZ,
                            classes=DETECT_CLASS_IDS, conf=SCORE_THRESHOLD, iou=NMS_IOU_THRESHOLD, device="cpu",
                            verbose=False, save=False)
    cameras = len(args.urls)
    started = None
    window = None
    images = 0
    for _ in results:
        images += 1
        if images % cameras:
            continue  # one Results per camera; a batch ends with the last camera's
        now = time.monotonic()
        if started is None:
            started = now
        elif window is None and now - started >= args.warmup_s:
            window = (now, process_cpu_s(), images, list(grabs))
        elif window is not None and now - window[0] >= args.measure_s:
            wall_s = now - window[0]
            cpu_s = process_cpu_s() - window[1]
            batches = (images - window[2]) / cameras
            decoded = [after - before for after, before in zip(grabs, window[3])]
            report = {
                "wall_s": wall_s, "cpu_s": cpu_s,
                "analysis_fps": [batches / wall_s] * cameras,
                "decode_fps": [count / wall_s for count in decoded],
                "network_attempts": attempts,
                "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                             "opencv": cv2.__version__, "torch_threads": torch.get_num_threads()},
            }
            streams_file.unlink()
            return report
    raise CompareError("Ultralytics' stream loader ended before the measurement finished; check the RTSP server")


def worker_edge(args: argparse.Namespace) -> dict:
    """Run CameraReader threads, a BatchScheduler, the Detector and the trackers on RTSP streams."""
    import hashlib
    import logging
    import threading

    import av
    import onnxruntime

    from edge.config import CameraConfig, PublisherConfig
    from edge.config.pipeline import DetectStage
    from edge.config.site import IngestConfig, RuntimeConfig
    from edge.ingest.reader import CameraReader
    from edge.models.manifest import ModelEntry
    from edge.runtime.analysis import CameraAnalysis
    from edge.runtime.detector import Detector
    from edge.runtime.layout import resolve_layout
    from edge.runtime.pipeline import PipelineRunner
    from edge.runtime.scheduler import BatchScheduler

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    model_path = Path(args.model)
    entry = ModelEntry(
        name="yolov8n_random", task="coco", file=model_path.name, url="",
        sha256=hashlib.sha256(model_path.read_bytes()).hexdigest(),
        licence="AGPL-3.0 (Ultralytics yolov8n architecture, random weights); benchmark only",
        family="yolov8", input_size=(args.width, args.height), colour_order="rgb", mean=(0.0, 0.0, 0.0),
        std=(255.0, 255.0, 255.0), letterbox="centre", pad_value=114,
    )
    stage_fields = {"batch_size": args.batch_size} if args.batch_size else {}
    stage = DetectStage(model=entry.name, classes=DETECT_CLASSES, score_threshold=SCORE_THRESHOLD,
                        nms_iou_threshold=NMS_IOU_THRESHOLD, max_wait_ms=args.max_wait_ms, **stage_fields)
    # The daemon's CPU defaults: inference workers, threads per session and batch size from the layout.
    layout = resolve_layout(RuntimeConfig(providers=["cpu"]), stage)
    stage = stage.model_copy(update={"batch_size": layout.batch_size})
    detectors = [Detector(entry, model_path, stage, ["cpu"], layout.intra_op_threads)
                 for _ in range(layout.inference_workers)]
    stop = threading.Event()
    cameras = [CameraConfig(id=f"cam-{i:02d}", name=f"camera {i}", source=url, max_fps=args.target_fps)
               for i, url in enumerate(args.urls)]
    analyses = {camera.id: CameraAnalysis(camera) for camera in cameras}
    # Detections go nowhere: the comparison covers decoding, inference and tracking, not the ZeroMQ feed.
    runner = PipelineRunner(analyses, lambda topic, body, images: True, PublisherConfig(), stages=[])
    scheduler = BatchScheduler("detect", detectors, stage.batch_size, stage.max_wait_ms, runner.on_batch, stop)
    readers = [CameraReader(camera, camera.source, IngestConfig(), scheduler.add_slot(camera.id), stop)
               for camera in cameras]
    scheduler.start()
    for reader in readers:
        reader.start()

    def snapshot() -> tuple[float, float, list[int], list[int]]:
        return (time.monotonic(), process_cpu_s(), [r.counters.frames_decoded for r in readers],
                [analyses[c.id].frames_inferred for c in cameras])

    # Warm-up starts when every camera has had a frame inferred, as the Ultralytics side starts at its first batch.
    deadline = time.monotonic() + TRIAL_TIMEOUT_MARGIN_S
    while min(a.frames_inferred for a in analyses.values()) == 0:
        if time.monotonic() > deadline:
            stop.set()
            raise CompareError("some cameras never got a frame inferred; check the RTSP server and the worker log")
        time.sleep(0.05)
    time.sleep(args.warmup_s)
    before = snapshot()
    time.sleep(args.measure_s)
    after = snapshot()
    stop.set()
    wall_s = after[0] - before[0]
    return {
        "wall_s": wall_s, "cpu_s": after[1] - before[1],
        "decode_fps": [(a - b) / wall_s for a, b in zip(after[2], before[2])],
        "analysis_fps": [(a - b) / wall_s for a, b in zip(after[3], before[3])],
        "batch": scheduler.counters.snapshot(),
        "reconnects": sum(r.counters.reconnects for r in readers),
        "network_attempts": [],
        "versions": {"onnxruntime": onnxruntime.__version__, "av": av.__version__,
                     "provider": detectors[0].provider, "max_batch": detectors[0].max_batch,
                     "inference_workers": layout.inference_workers, "intra_op_threads": layout.intra_op_threads},
    }


WORKERS = {"prepare-clip": worker_prepare_clip, "export": worker_export, "ultralytics": worker_ultralytics,
           "edge": worker_edge}


def run_worker(args: argparse.Namespace) -> int:
    try:
        report = WORKERS[args.worker](args)
    except CompareError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        os._exit(1)
    print(json.dumps(report), flush=True)
    # Capture threads of Ultralytics and reader threads are daemons; exit without joining them.
    os._exit(0)


# ---------------------------------------------------------------------------------------------------------
# Driver.


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise CompareError(f"invalid size '{text}'; expected WIDTHxHEIGHT such as 1280x720")
    return int(width), int(height)


def letterboxed_size(width: int, height: int) -> tuple[int, int]:
    """Return the (width, height) that Ultralytics' rectangular letterbox gives a frame at imgsz 640, stride 32."""
    scale = MODEL_IMGSZ / max(width, height)
    scaled_w, scaled_h = round(width * scale), round(height * scale)
    return (-(-scaled_w // 32) * 32, -(-scaled_h // 32) * 32)


def call_worker(python: str, worker: str, options: list[str], env: dict[str, str], cwd: Path, timeout_s: float,
                log_path: Path) -> dict:
    command = [python, str(Path(__file__).resolve()), "--worker", worker, *options]
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **env},
                                  cwd=cwd, timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            raise CompareError(f"worker '{worker}' timed out after {timeout_s:.0f} s; see {log_path}") from error
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"error": f"no report; exit status {done.returncode}"}
    if "error" in report:
        raise CompareError(f"worker '{worker}' failed: {report['error']}; see {log_path}")
    return report


class RtspServer:
    """tests/support/rtsp_server.py under the system Python, serving one clip on `mounts` mounts of 127.0.0.1."""

    def __init__(self, clip: Path, mounts: int, log_path: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        mount_args = [f"cam{i}={clip}" for i in range(mounts)]
        self.log = open(log_path, "a")
        self.process = subprocess.Popen(["/usr/bin/python3", str(RTSP_SERVER), str(self.port), *mount_args],
                                        stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise CompareError(f"the RTSP server did not start (first line: {line.strip()!r}); see {log_path}")

    def urls(self, count: int) -> list[str]:
        return [f"rtsp://127.0.0.1:{self.port}/cam{i}" for i in range(count)]

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def fit_costs(trials: list[dict]) -> tuple[float, float] | None:
    """Fit cores = cameras * d + analysed_fps * c over `trials` by least squares; return (d, c) or None."""
    rows = [(t["cameras"], t["cameras"] * statistics.fmean(t["analysis_fps"]), t["cores_used"]) for t in trials]
    s11 = sum(a * a for a, _, _ in rows)
    s12 = sum(a * b for a, b, _ in rows)
    s22 = sum(b * b for _, b, _ in rows)
    t1 = sum(a * y for a, _, y in rows)
    t2 = sum(b * y for _, b, y in rows)
    determinant = s11 * s22 - s12 * s12
    # Trials that all analyse at the same rate per camera cannot separate stream cost from frame cost.
    if abs(determinant) < 1e-9 * max(s11 * s22, 1e-12):
        return None
    return (t1 * s22 - t2 * s12) / determinant, (s11 * t2 - s12 * t1) / determinant


def is_sustained(report: dict, target_fps: float, stream_fps: float) -> bool:
    return (min(report["analysis_fps"]) >= ANALYSIS_SHARE * target_fps
            and min(report["decode_fps"]) >= DECODE_SHARE * stream_fps)


def run_trial(system: str, cameras: int, args: argparse.Namespace, context: dict) -> dict:
    server: RtspServer = context["server"]
    common = ["--urls", *server.urls(cameras), "--warmup-s", str(args.warmup_s), "--measure-s", str(args.measure_s),
              "--target-fps", str(args.target_fps)]
    timeout_s = args.warmup_s + args.measure_s + TRIAL_TIMEOUT_MARGIN_S
    width, height = context["input_size"]
    if system == "edge":
        options = [*common, "--model", str(context["onnx"]), "--width", str(width), "--height", str(height),
                   "--batch-size", str(args.batch_size), "--max-wait-ms", str(args.max_wait_ms)]
        python, env = args.edge_python, {}
    else:
        model = context["state"] if system == "ultralytics-pt" else context["onnx"]
        options = [*common, "--backend", system.split("-")[1], "--model", str(model),
                   "--vid-stride", str(round(args.stream_fps / args.target_fps))]
        python, env = args.ultralytics_python, context["ultralytics_env"]
    server_cpu_before = server.cpu_s()
    report = call_worker(python, "edge" if system == "edge" else "ultralytics", options, env, context["work_dir"],
                         timeout_s, context["log"])
    report["server_cpu_s"] = server.cpu_s() - server_cpu_before
    report["cameras"] = cameras
    report["cores_used"] = report["cpu_s"] / report["wall_s"]
    report["sustained"] = is_sustained(report, args.target_fps, args.stream_fps)
    return report


def prepare(args: argparse.Namespace, work_dir: Path, log: Path) -> dict:
    width, height = parse_size(args.size)
    clip = work_dir / f"clip_{args.size}_{args.stream_fps:g}fps.mp4"
    if not clip.is_file():
        print(f"re-encoding {args.source} to H.264 {args.size} at {args.stream_fps:g} fps ...", flush=True)
        call_worker(args.edge_python, "prepare-clip", ["--source", str(args.source), "--out", str(clip), "--size",
                    args.size, "--fps", f"{args.stream_fps:g}", "--seconds", str(args.clip_seconds)], {}, work_dir,
                    600, log)
    input_w, input_h = letterboxed_size(width, height)
    config_dir = work_dir / "ultralytics-config"
    config_dir.mkdir(exist_ok=True)
    ultralytics_env = ultralytics_environment(config_dir)
    onnx_path = work_dir / f"yolov8n_random_{input_w}x{input_h}.onnx"
    print("building yolov8n from YAML and exporting it to ONNX ...", flush=True)
    export = call_worker(args.ultralytics_python, "export", ["--out", str(onnx_path), "--width", str(input_w),
                         "--height", str(input_h)], ultralytics_env, work_dir, 600, log)
    if export["network_attempts"]:
        raise CompareError(f"Ultralytics tried to reach the network while building and exporting: "
                           f"{export['network_attempts']}; add the missing offline setting")
    return {"clip": clip, "onnx": onnx_path, "state": work_dir / "yolov8n_random_state.pt", "export": export,
            "input_size": (input_w, input_h), "ultralytics_env": ultralytics_env}


def find_source(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    media = os.environ.get("EDGE_MEDIA_DIR")
    if not media:
        raise CompareError("set EDGE_MEDIA_DIR to the folder with car-detection.mp4, or pass --source CLIP")
    for candidate in (Path(media) / "car-detection.mp4", Path(media) / "videos" / "car-detection.mp4"):
        if candidate.is_file():
            return candidate
    raise CompareError(f"car-detection.mp4 not found in {media} or {media}/videos; pass --source CLIP")


def machine_facts() -> dict:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return {"cpu": model, "logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "kernel": platform.release(), "python": platform.python_version()}


def summarise(trials: list[dict], systems: list[str], target_fps: float) -> dict:
    """Per system: the largest sustained count per repeat with its cameras per core, and the cost fit."""
    summary = {}
    for system in systems:
        own = [t for t in trials if t["system"] == system]
        largest = []
        per_core = []
        for repeat in sorted({t["repeat"] for t in own}):
            sustained = [t for t in own if t["repeat"] == repeat and t["sustained"]]
            best = max(sustained, key=lambda t: t["cameras"], default=None)
            largest.append(best["cameras"] if best else 0)
            if best:
                per_core.append(best["cameras"] / best["cores_used"])
        costs = fit_costs(own)
        row = {"largest_count": largest, "median_largest_count": statistics.median(largest),
               "median_cameras_per_core_at_largest": statistics.median(per_core) if per_core else None,
               "stream_cores_per_camera": None, "cores_per_analysed_frame": None, "fitted_cameras_per_core": None}
        if costs:
            stream_cost, frame_cost = costs
            row.update(stream_cores_per_camera=stream_cost, cores_per_analysed_frame=frame_cost,
                       fitted_cameras_per_core=1 / (stream_cost + target_fps * frame_cost))
        summary[system] = row
    return summary


def print_report(facts: dict, settings: dict, context: dict, trials: list[dict], summary: dict) -> None:
    print()
    for key, value in {**facts, **settings}.items():
        print(f"{key + ':':22}{value}")
    export = context["export"]
    print(f"{'export:':22}ultralytics {export['ultralytics']}, torch {export['torch']}, input {export['input']}, "
          f"network attempts {len(export['network_attempts'])}")

    print()
    print("trials (in run order)")
    print(f"  {'repeat':>6} {'system':18} {'cameras':>7} {'cores':>6} {'min analysis/s':>15} {'min decode/s':>13} "
          f"{'server cores':>12}  sustained")
    for t in trials:
        print(f"  {t['repeat']:>6} {t['system']:18} {t['cameras']:>7} {t['cores_used']:>6.2f} "
              f"{min(t['analysis_fps']):>15.2f} {min(t['decode_fps']):>13.2f} {t['server_cpu_s'] / t['wall_s']:>12.2f}"
              f"  {'yes' if t['sustained'] else 'no'}")

    print()
    print(f"  {'system':18} {'largest sustained':>18} {'cameras/core':>13} {'stream ms CPU/s':>16} "
          f"{'ms CPU/frame':>13} {'fitted cameras/core':>20}")
    for system, row in summary.items():
        at_largest = row["median_cameras_per_core_at_largest"]
        fitted = row["fitted_cameras_per_core"]
        stream = row["stream_cores_per_camera"]
        frame = row["cores_per_analysed_frame"]
        print(f"  {system:18} {str(row['largest_count']):>18} {f'{at_largest:.2f}' if at_largest else '-':>13} "
              f"{f'{1000 * stream:.1f}' if stream is not None else '-':>16} "
              f"{f'{1000 * frame:.1f}' if frame is not None else '-':>13} "
              f"{f'{fitted:.2f}' if fitted else '-':>20}")

    print()
    edge = summary.get("edge", {})
    for system in ("ultralytics-pt", "ultralytics-onnx"):
        other = summary.get(system)
        if not other:
            continue
        if edge.get("fitted_cameras_per_core") and other["fitted_cameras_per_core"]:
            print(f"edge / {system}, fitted cameras per core: "
                  f"{edge['fitted_cameras_per_core'] / other['fitted_cameras_per_core']:.2f} x")
        if edge.get("median_cameras_per_core_at_largest") and other["median_cameras_per_core_at_largest"]:
            print(f"edge / {system}, cameras per core at the largest sustained count: "
                  f"{edge['median_cameras_per_core_at_largest'] / other['median_cameras_per_core_at_largest']:.2f} x")
        elif edge.get("median_cameras_per_core_at_largest"):
            print(f"edge / {system}, largest sustained count: no ratio, because {system} sustained no count")


def run_driver(args: argparse.Namespace) -> int:
    for python, option in ((args.ultralytics_python, "--ultralytics-python"), (args.edge_python, "--edge-python")):
        if not Path(python).is_file():
            raise CompareError(f"{option} {python} not found; see the header of "
                               "benchmarks/requirements-ultralytics.txt for how to create it")
    if not Path("/usr/bin/python3").is_file():
        raise CompareError("the RTSP server needs /usr/bin/python3 with python3-gi and GStreamer's RTSP server "
                           "(Debian: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good/bad)")
    args.source = find_source(args.source)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    log = work_dir / "workers.log"
    started = time.monotonic()
    context = prepare(args, work_dir, log)
    context.update(work_dir=work_dir, log=log)
    systems = [s for s in SYSTEMS if s in args.systems]
    context["server"] = RtspServer(context["clip"], max(args.counts), log)
    trials: list[dict] = []
    try:
        round_index = 0
        for repeat in range(1, args.repeats + 1):
            for cameras in args.counts:
                # Rotate the order every round, so no system always runs right after the same other one.
                shift = round_index % len(systems)
                round_index += 1
                for system in systems[shift:] + systems[:shift]:
                    report = run_trial(system, cameras, args, context)
                    report.update(system=system, repeat=repeat)
                    trials.append(report)
                    print(f"repeat {repeat} {system:17} {cameras:2d} cameras: {report['cores_used']:.2f} cores, "
                          f"min analysis {min(report['analysis_fps']):.2f}/s, min decode "
                          f"{min(report['decode_fps']):.2f}/s -> {'sustained' if report['sustained'] else 'not'}",
                          flush=True)
    finally:
        context["server"].stop()

    width, height = parse_size(args.size)
    settings = {
        "streams": f"{args.size} H.264 at {args.stream_fps:g} fps over RTSP/TCP from 127.0.0.1 (GOP 50)",
        "source clip": str(args.source),
        "network input": f"{context['input_size'][0]}x{context['input_size'][1]} (letterboxed {width}x{height})",
        "target": f"{args.target_fps:g} detections/s per camera (sustained: >= {ANALYSIS_SHARE:.0%} of it and "
                  f"decoding >= {DECODE_SHARE:.0%} of {args.stream_fps:g} fps)",
        "window": f"{args.warmup_s:g} s warm-up + {args.measure_s:g} s measured per trial",
        "edge batch": f"batch_size {args.batch_size or 'daemon default'}, max_wait_ms {args.max_wait_ms:g}",
        "camera counts": " ".join(map(str, args.counts)),
        "repeats": args.repeats,
        "worker versions": {t["system"]: t["versions"] for t in reversed(trials)},
        "measured in": f"{time.monotonic() - started:.0f} s",
    }
    summary = summarise(trials, systems, args.target_fps)
    if args.json:
        print(json.dumps({"machine": machine_facts(), "settings": settings, "export": context["export"],
                          "trials": trials, "summary": summary}, indent=2))
    else:
        print_report(machine_facts(), settings, context, trials, summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default_venv = PROJECT_ROOT / "benchmarks" / ".venv-ultralytics" / "bin" / "python"
    parser.add_argument("--ultralytics-python",
                        default=str(default_venv if default_venv.is_file() else "/tmp/venv-ultralytics/bin/python"),
                        help="Python of the Ultralytics environment (default: benchmarks/.venv-ultralytics, "
                        "else /tmp/venv-ultralytics)")
    parser.add_argument("--edge-python", default=str(PROJECT_ROOT / ".venv" / "bin" / "python"),
                        help="Python of the project's environment, with `edge` installed (default: .venv)")

    parser.add_argument("--source", help="clip to stream (default: car-detection.mp4 in EDGE_MEDIA_DIR)")
    parser.add_argument("--size", default="1280x720", help="stream frame size, WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--stream-fps", type=float, default=25.0, help="stream frame rate (default 25)")
    parser.add_argument("--clip-seconds", type=float, default=120.0,
                        help="length of the streamed clip in seconds; longer than one trial (default 120)")
    parser.add_argument("--target-fps", type=float, default=5.0,
                        help="detections per second per camera (default 5); must divide the stream rate")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4],
                        help="camera counts of the sweep (default 1 2 4)")
    parser.add_argument("--repeats", type=int, default=2, help="sweeps per system (default 2)")
    parser.add_argument("--warmup-s", type=float, default=6.0, help="seconds run before each measurement (default 6)")
    parser.add_argument("--measure-s", type=float, default=12.0, help="seconds measured per trial (default 12)")

    parser.add_argument("--batch-size", type=int, default=0,
                        help="edge: frames per inference call (default 0: the daemon's default for the CPU provider)")
    parser.add_argument("--max-wait-ms", type=float, default=20.0,
                        help="edge: maximum wait in ms for a batch to fill (default 20)")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS, help="systems to compare")
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "edge-ultralytics-compare"),
                        help="folder for the clip, the exported model and workers.log (default under /tmp)")
    parser.add_argument("--json", action="store_true", help="print every trial and the summary as JSON")
    # Worker mode: the driver starts this script again with --worker in the right virtual environment.
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--fps", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--urls", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["pt", "onnx"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--vid-stride", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        if args.worker == "prepare-clip":
            args.fps = int(args.fps)
        return run_worker(args)
    if args.stream_fps % args.target_fps:
        print(f"error: --target-fps {args.target_fps:g} must divide --stream-fps {args.stream_fps:g}, because "
              "Ultralytics keeps every n-th frame (vid_stride)", file=sys.stderr)
        return 2
    try:
        return run_driver(args)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
