"""Site config: which cameras this box reads, where it publishes, and how it runs inference."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CAMERA_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
RTSP_SCHEMES = ("rtsp://", "rtsps://")
PROVIDER_NAMES = ("tensorrt", "cuda", "cpu")


class StrictModel(BaseModel):
    # strict: TOML has real booleans and numbers, so "yes" or "5" in a config is a mistake worth reporting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


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
        default="detect",
        pattern=r"^[a-z0-9_-]+$",
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

    @field_validator("source")
    @classmethod
    def _check_source_scheme(cls, source: str) -> str:
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", source)
        if scheme and not source.lower().startswith(RTSP_SCHEMES):
            raise ValueError(
                f"unsupported scheme '{scheme.group(1)}://'; allowed: rtsp://, rtsps:// or a file path"
            )
        if scheme:
            # Everything after the last '@' of the authority is host and port; passwords may contain '@'.
            authority = source[len(scheme.group(0)):].split("/", 1)[0].rsplit("@", 1)[-1]
            host, _, port = authority.rpartition(":") if authority.count(":") == 1 else (authority, "", "")
            if not host:
                raise ValueError("the URL has no host; expected rtsp://[user:password@]host[:port]/path")
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


class IngestConfig(StrictModel):
    """Stream timeouts and reconnect backoff of the camera readers."""

    open_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Maximum wait for a stream to open (RTSP handshake and probe)."
    )
    read_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Maximum wait for the next frame; a camera silent for longer is reconnected.",
    )
    backoff_initial_s: float = Field(default=1.0, gt=0, le=60, description="First wait before a reconnect.")
    backoff_max_s: float = Field(
        default=30.0, gt=0, le=600, description="Cap for the doubling wait between reconnects."
    )

    @model_validator(mode="after")
    def _check_backoff_order(self) -> IngestConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) must be at least backoff_initial_s "
                f"({self.backoff_initial_s})"
            )
        return self


class RuntimeConfig(StrictModel):
    """Inference settings shared by every pipeline on this box."""

    providers: list[Literal["tensorrt", "cuda", "cpu"]] = Field(
        default=["tensorrt", "cuda", "cpu"],
        min_length=1,
        description="ONNX Runtime providers in order of preference; the first available one is used.",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, le=256, description="CPU threads per inference call; 0 lets ONNX Runtime choose."
    )


class PublisherConfig(StrictModel):
    """The ZeroMQ feed."""

    endpoint: str = Field(
        default="tcp://127.0.0.1:5556",
        pattern=r"^(tcp|ipc|inproc)://.+$",
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
        pattern=r"^$|^(tcp|ipc|inproc)://.+$",
        description="ZeroMQ endpoint of the ROUTER socket that resends stored messages on request "
        "(`edge subscribe --from-seq`); \"\" turns replay off. Bind it only where trusted hosts can connect.",
    )


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
        seen: set[str] = set()
        for camera in cameras:
            if camera.id in seen:
                raise ValueError(f"camera id '{camera.id}' appears more than once; each camera needs its own id")
            seen.add(camera.id)
        return cameras
