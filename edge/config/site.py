"""Site config: which cameras this box reads, where it publishes, and how it runs inference."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from edge.ingest.redact import register_secrets

CAMERA_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CAMERA_ID_MAX_LENGTH = 64
RTSP_SCHEMES = ("rtsp://", "rtsps://")
PROVIDER_NAMES = ("tensorrt", "cuda", "cpu")


MAX_IGNORE_ZONES = 32
MAX_ZONE_POINTS = 64
# A point [x, y] in coordinates normalised to the frame: 0..1 on both axes, origin at the top-left corner.
ZonePoint = Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=2, max_length=2)]
Polygon = Annotated[list[ZonePoint], Field(min_length=3, max_length=MAX_ZONE_POINTS)]


class StrictModel(BaseModel):
    # strict: TOML has real booleans and numbers, so "yes" or "5" in a config is a mistake worth reporting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


DEFAULT_PIPELINE = "detect"
# Pipeline names are file names without '.toml', so they cannot reach outside the pipelines folder.
PIPELINE_NAME_PATTERN = r"^[a-z0-9_-]+$"


class CameraConfig(StrictModel):
    """One camera stream, or one video file replayed as a camera."""

    id: str = Field(
        pattern=CAMERA_ID_PATTERN,
        description="Stable id used in logs, the feed and camera assignment; lower case, digits, '-' and '_'.",
    )
    name: str = Field(min_length=1, max_length=200, description="Human-readable name shown to investigators.")
    source: str = Field(
        min_length=1,
        description="rtsp:// or rtsps:// URL, or a video file path; a relative path is looked up beside "
        "the config file, then in the media directories.",
    )
    pipeline: str = Field(
        default=DEFAULT_PIPELINE,
        pattern=PIPELINE_NAME_PATTERN,
        description="Name of a pipeline file in the pipelines directory, without '.toml'.",
    )
    max_fps: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="Frames per second passed to inference; lower it to fit more cameras on one box.",
    )
    decode: Literal["all", "keyframes"] = Field(
        default="all",
        description="'all' decodes every frame, and max_fps picks the frames passed to inference. 'keyframes' "
        "makes FFmpeg skip every frame except key frames (skip_frame=nonkey), so the camera gives one frame "
        "per GOP, such as one every 2 s at GOP 50 and 25 fps, for a fraction of the decoding CPU (measure it "
        "with `edge bench decode`); max_fps still caps. Use it for cameras that need one look per GOP. A "
        "camera that sends no key frames (periodic intra refresh) gives no frames in this mode.",
    )
    max_frame_width: int | None = Field(
        default=None,
        ge=64,
        le=8192,
        description="Scale frames wider than this many pixels down to it, keeping the aspect ratio, while "
        "converting them to BGR, which costs less CPU than converting at full size (measure it with "
        "`edge bench decode`). Boxes and frame_size in the feed are then in pixels of the scaled frame. Set it "
        "near the detector's input width for detect-only cameras; cameras whose pipeline has a plate or face "
        "stage need full-resolution crops and reject it. Unset: frames keep the camera's size.",
    )
    enabled: bool = Field(default=True, description="A disabled camera is validated but not read.")
    realtime: bool = Field(
        default=True,
        description="File sources only: pace frames to their timestamps; false reads as fast as possible.",
    )
    loop: bool = Field(default=False, description="File sources only: start again from the beginning at the end.")
    face_camera: bool = Field(
        default=False,
        description="A camera that films faces close up: search whole frames for faces instead of person "
        "crops; its pipeline needs a [faces] stage.",
    )
    plate_camera: bool = Field(
        default=False,
        description="A dedicated plate camera: search whole frames for plates instead of vehicle crops; its "
        "pipeline needs a [plates] stage.",
    )
    motion_gating: bool = Field(
        default=False,
        description="Send a frame to the detector only when the scene moves, when the camera's tracker follows "
        "a moving or lost object, or every keepalive_interval_s; count the others as frames_gated. A static "
        "scene then costs a few detector calls a minute instead of max_fps per second. False sends every frame.",
    )
    motion_threshold: float = Field(
        default=0.002,
        ge=0.0001,
        le=0.5,
        description="Fraction of the cells of the downscaled grey frame (about 160 cells wide) that must differ "
        "from the background for a frame to count as motion. Lowering it lets smaller or more distant objects "
        "through, and more noise. Raising it ignores small changes such as rain or flicker, but an object must "
        "cover more of the frame before the gate opens.",
    )
    keepalive_interval_s: float = Field(
        default=10.0,
        ge=0.5,
        le=3600,
        description="With motion_gating, a frame goes to the detector at least this often, even in a static "
        "scene. It confirms stationary objects and finds what moved too little to count as motion. Lowering it "
        "finds such objects sooner and costs more detector calls. Raising it saves calls on static scenes.",
    )
    ignore_zones: list[Polygon] = Field(
        default=[],
        max_length=MAX_IGNORE_ZONES,
        description="Polygons, each a list of at least 3 [x, y] points with coordinates normalised to the frame "
        "(0..1, origin top-left), whose motion never opens the gate, such as a clock overlay or swaying trees. "
        "Objects inside them are still detected in the frames that are sent. Each zone added makes motion in "
        "that area invisible to the gate.",
    )

    @field_validator("source")
    @classmethod
    def _check_source_scheme(cls, source: str) -> str:
        # Registered before any check, so that the error messages below and every later log line hide them.
        register_secrets(source)
        if re.match(r"^rtsps?:(?!//)", source, re.IGNORECASE):
            raise ValueError("the URL needs two slashes after the scheme; write rtsp://")
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", source)
        if scheme and not source.lower().startswith(RTSP_SCHEMES):
            raise ValueError(
                f"unsupported scheme '{scheme.group(1)}://'; allowed: rtsp://, rtsps:// or a file path"
            )
        if scheme and re.search(r"[\s'\"\x00-\x1f\x7f]", source):
            raise ValueError("the URL contains a space, quote or control character, which an RTSP URL cannot "
                             "carry; percent-encode it, such as a space in a password as %20")
        if scheme:
            # Everything after the last '@' of the authority is host and port; passwords may contain '@'.
            authority = source[len(scheme.group(0)):].split("/", 1)[0].rsplit("@", 1)[-1]
            host, _, port = authority.rpartition(":") if authority.count(":") == 1 else (authority, "", "")
            if not host:
                raise ValueError("the URL has no host; expected rtsp://host[:port]/path, with the user name and "
                                 "password before the host when the camera needs them")
            if port and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"port '{port}' is not a number from 1 to 65535")
        return source

    @property
    def is_rtsp(self) -> bool:
        return self.source.lower().startswith(RTSP_SCHEMES)

    @model_validator(mode="after")
    def _check_file_options(self) -> CameraConfig:
        if self.is_rtsp and self.loop:
            raise ValueError("'loop' applies only to file sources; remove it for an rtsp:// camera")
        return self

    @field_validator("ignore_zones")
    @classmethod
    def _check_zone_areas(cls, zones: list[list[list[float]]]) -> list[list[list[float]]]:
        flat = []
        for index, zone in enumerate(zones):
            # Shoelace formula; a zone with no area (all points on one line) covers no cell.
            area = 0.5 * abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(zone, zone[1:] + zone[:1])))
            if area < 1e-6:
                flat.append(str(index))
        if flat:
            # Every flat zone is named, so that one run of check-config shows them all.
            raise ValueError(f"zones with no area: {', '.join(flat)} (their points lie on one line or repeat); "
                             "give each at least 3 points that enclose the area to ignore")
        return zones

    @model_validator(mode="after")
    def _check_keepalive(self) -> CameraConfig:
        frame_interval_s = 1.0 / self.max_fps
        if self.motion_gating and self.keepalive_interval_s <= frame_interval_s:
            raise ValueError(
                f"keepalive_interval_s ({self.keepalive_interval_s:g}) must be longer than the frame interval "
                f"1/max_fps ({frame_interval_s:g} s), otherwise every frame is sent and motion_gating does nothing"
            )
        return self


class IngestConfig(StrictModel):
    """Stream timeouts and reconnect backoff of the camera readers."""

    open_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Maximum wait for a stream to open (RTSP handshake and probe)."
    )
    read_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Maximum wait for the next frame; a camera silent for longer is reconnected. NOTE: an RTSP "
        "server that stops sending without closing the connection was detected only after open_timeout_s when "
        "that is longer (10.2 s with 10 and 5), because FFmpeg's socket timeout must also cover the handshake.",
    )
    backoff_initial_s: float = Field(default=1.0, gt=0, le=60, description="First wait before a reconnect.")
    backoff_max_s: float = Field(
        default=30.0, gt=0, le=600, description="Cap for the doubling wait between reconnects. Each wait is 75% to "
        "100% of its step, at random, so cameras that fail together do not reconnect all at once."
    )

    # A field validator and not a model validator, so that it also runs when another field of the table is
    # invalid, and check-config lists both errors in one run.
    @field_validator("backoff_max_s")
    @classmethod
    def _check_backoff_order(cls, backoff_max_s: float, info: ValidationInfo) -> float:
        backoff_initial_s = info.data.get("backoff_initial_s")
        if backoff_initial_s is not None and backoff_max_s < backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({backoff_max_s}) must be at least backoff_initial_s ({backoff_initial_s})"
            )
        return backoff_max_s


class RuntimeConfig(StrictModel):
    """Inference settings shared by every pipeline on this box."""

    providers: list[Literal["tensorrt", "cuda", "cpu"]] = Field(
        default=["tensorrt", "cuda", "cpu"],
        min_length=1,
        description="ONNX Runtime providers in order of preference; the first available one is used.",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="CPU threads of each inference worker's ONNX Runtime session. 0 picks the device default. "
        "On the CPU provider that is the usable cores divided by inference_workers (at least 1), so the "
        "workers together use every core once. On CUDA or TensorRT, ONNX Runtime chooses. Raising it speeds "
        "up one call on the CPU provider, but workers times threads above the cores only makes them compete.",
    )
    inference_workers: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="Inference workers per pipeline. Each has its own ONNX Runtime session (one more copy of "
        "the model in memory) with intra_op_threads threads, and all take batches from the pipeline's "
        "scheduler, so one worker letterboxes and decodes while another runs the model. Raising it helps on "
        "CPU boxes, where several single-threaded sessions use the cores better than one multi-threaded "
        "session; on a GPU, batch_size is the main lever. Lowering it to 1 runs one batch at a time. Unset: "
        "the device default, 2 on the CPU provider and 1 on CUDA or TensorRT (edge/runtime/layout.py).",
    )


FEED_ENDPOINT_PATTERN = r"^(tcp|ipc|inproc)://.+$"
# "" turns replay off.
REPLAY_ENDPOINT_PATTERN = r"^$|^(tcp|ipc|inproc)://.+$"


class PublisherConfig(StrictModel):
    """The ZeroMQ feed."""

    endpoint: str = Field(
        default="tcp://127.0.0.1:5556",
        pattern=FEED_ENDPOINT_PATTERN,
        description="ZeroMQ endpoint the PUB socket binds, such as tcp://127.0.0.1:5556.",
    )
    health_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds between 'health' messages with camera counters."
    )
    queue_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Messages waiting to be sent; when full, new messages of any topic are dropped and counted.",
    )
    send_hwm: int = Field(
        default=1000,
        ge=10,
        le=1_000_000,
        description="Messages ZeroMQ queues for each subscriber (ZMQ_SNDHWM). A subscriber that falls this far "
        "behind misses the next messages until it has read about half of its queue, and health counts each "
        "such overflow in publisher.hwm_overflows. The other subscribers still get those messages. Raising it "
        "lets a subscriber catch up after a longer pause, but each subscriber can then take up to this many "
        "messages of memory, snapshots included. Lowering it bounds that memory and starts dropping sooner.",
    )
    send_snapshots: bool = Field(
        default=False, description="Attach a JPEG of the frame to each 'det' message (costs CPU and bandwidth)."
    )
    jpeg_quality: int = Field(default=80, ge=10, le=100, description="JPEG quality of snapshots.")
    send_empty_frames: bool = Field(
        default=False, description="Also publish 'det' for frames in which nothing was detected."
    )
    outbox_path: str | None = Field(
        default=None,
        min_length=1,
        description="SQLite file that stores every hit and plate message before it is sent, for replay, and the "
        "last sequence number, so that numbers continue after a restart. A relative path is taken from the "
        "folder of the config file. When unset, $EDGE_DATA_DIR/outbox.sqlite, else data/outbox.sqlite in the "
        "working directory. Each daemon needs its own file.",
    )
    outbox_max_age_s: float = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=366 * 24 * 3600,
        description="Seconds a stored message stays replayable; older ones are deleted. Raising it keeps more "
        "history for late subscribers and uses more disk, up to outbox_max_mb.",
    )
    outbox_max_mb: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Maximum MiB of stored headers and images; the oldest messages are deleted beyond it. The file "
        "itself is somewhat larger, because SQLite adds its own overhead and reuses freed pages without "
        "shrinking the file.",
    )
    replay_endpoint: str = Field(
        default="tcp://127.0.0.1:5557",
        pattern=REPLAY_ENDPOINT_PATTERN,
        description="ZeroMQ endpoint of the ROUTER socket that resends stored messages on request "
        "(`edge subscribe --from-seq`); \"\" turns replay off. Bind it only where trusted hosts can connect.",
    )

    @field_validator("endpoint", "replay_endpoint")
    @classmethod
    def _check_tcp_port(cls, endpoint: str) -> str:
        # ZeroMQ bound port 34463 for 99999 (the port modulo 65536) without an error.
        if endpoint.startswith("tcp://"):
            address = endpoint[len("tcp://"):]
            if ":" not in address:
                raise ValueError("the endpoint has no port; expected tcp://HOST:PORT, such as tcp://127.0.0.1:5556")
            port = address.rsplit(":", 1)[1]
            if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"port '{port}' is not a number from 1 to 65535, or * for any free port")
        return endpoint

    @model_validator(mode="after")
    def _check_distinct_endpoints(self) -> PublisherConfig:
        if self.replay_endpoint == self.endpoint:
            raise ValueError(f"replay_endpoint is the same as endpoint ({self.endpoint}), which the feed socket "
                             "binds first; give the replay socket its own port, such as tcp://127.0.0.1:5557")
        return self


class MetricsConfig(StrictModel):
    """The Prometheus metrics endpoint."""

    enabled: bool = Field(default=True, description="Serve http://HOST:PORT/metrics.")
    host: str = Field(default="127.0.0.1", min_length=1, description="Address to listen on; keep it local "
                      "unless the scraper runs on another host.")
    port: int = Field(default=9500, ge=1, le=65535, description="TCP port of the metrics endpoint.")


class WatchlistSourceConfig(StrictModel):
    """The web service from which this box pulls its watchlists into `watchlist_db`."""

    url: str = Field(
        min_length=1,
        description="http:// or https:// address of the web service, such as https://watchlists.example:8080; "
        "the daemon adds /api/v1/watchlists/... to it.",
    )
    token_file: str = Field(
        min_length=1,
        description="File that contains one token from the web service's api_tokens; a relative path is taken "
        "from the folder of the config file. Make it readable by the daemon's user only.",
    )
    interval_s: float = Field(
        default=10.0, ge=1, le=3600,
        description="Seconds between polls; lower it to spread changes faster, at the cost of one small request "
        "per poll when nothing changed.",
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="Maximum wait for one response.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        match = re.match(r"^(https?)://([^/?#]*)", url, flags=re.IGNORECASE)
        if not match or not match.group(2):
            raise ValueError("expected http://HOST[:PORT] or https://HOST[:PORT] of the web service")
        if "@" in match.group(2):
            raise ValueError("the URL must not contain credentials; put the API token in token_file")
        return url


class SiteConfig(StrictModel):
    """Everything one box needs to run: its cameras, inference runtime and feed."""

    box_id: str = Field(
        default="edge-box",
        pattern=CAMERA_ID_PATTERN,
        description="Publisher id in every feed message; unique per box.",
    )
    model_dir: str | None = Field(
        default=None,
        description="Folder with model files; when unset, EDGE_MODEL_DIR, then models/ in the working directory.",
    )
    pipeline_dir: str | None = Field(
        default=None, description="Folder with pipeline files; when unset, the pipelines/ folder of this project."
    )
    watchlist_db: str | None = Field(
        default=None,
        description="SQLite watchlist database that `edge watchlist` writes; when unset, "
        "$EDGE_DATA_DIR/watchlists.sqlite, else data/watchlists.sqlite in the working directory.",
    )
    watchlist_source: WatchlistSourceConfig | None = Field(
        default=None,
        description="Pull the watchlists from the web service into watchlist_db. Pulled lists replace what "
        "`edge watchlist` wrote there; leave it unset to manage a stand-alone box's watchlists locally.",
    )
    cameras: list[CameraConfig] = Field(min_length=1, description="Cameras this box reads.")
    ingest: IngestConfig = IngestConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    publisher: PublisherConfig = PublisherConfig()
    metrics: MetricsConfig = MetricsConfig()

    @field_validator("cameras")
    @classmethod
    def _check_unique_ids(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        duplicate = first_duplicate_id([camera.id for camera in cameras])
        if duplicate is not None:
            raise ValueError(duplicate_id_message(duplicate))
        return cameras


def first_duplicate_id(ids: list[object]) -> object | None:
    """Return the first id that appears a second time in `ids`, or None."""
    seen: set[object] = set()
    for camera_id in ids:
        if camera_id in seen:
            return camera_id
        seen.add(camera_id)
    return None


def duplicate_id_message(camera_id: object) -> str:
    return f"camera id '{camera_id}' appears more than once; each camera needs its own id"
