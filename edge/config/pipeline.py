"""Pipeline files: which stages run on a camera's frames, with which model and thresholds."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from edge.config.site import PIPELINE_NAME_PATTERN, StrictModel

# The COCO-80 class names in model output order.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


class DetectStage(StrictModel):
    """Object detection on whole frames, batched across cameras."""

    model: str = Field(min_length=1, description="Model name from models/manifest.toml.")
    classes: list[str] = Field(
        default=["person", "bicycle", "car", "motorcycle", "bus", "truck"],
        min_length=1,
        description="Class names kept; all others are discarded before NMS.",
    )
    score_threshold: float = Field(
        default=0.25, gt=0, lt=1, description="Minimum detection score; raise it for fewer false alarms."
    )
    nms_iou_threshold: float = Field(
        default=0.45, gt=0, le=1, description="Boxes of one class overlapping more than this IoU are merged."
    )
    class_agnostic_nms: bool = Field(
        default=False,
        description="Let boxes of different classes suppress each other, so one vehicle is not reported as both "
        "car and truck; the higher-scoring class wins.",
    )
    batch_size: int = Field(default=4, ge=1, le=64, description="Maximum frames per inference call.")
    max_wait_ms: float = Field(
        default=20.0,
        ge=0,
        le=1000,
        description="Maximum wait for a batch to fill once its first frame is ready; trades latency for throughput.",
    )

    @field_validator("classes")
    @classmethod
    def _check_class_names(cls, classes: list[str]) -> list[str]:
        unknown = [name for name in classes if name not in COCO_CLASSES]
        if unknown:
            raise ValueError(f"unknown class names {unknown}; allowed: the 80 COCO names, such as person, car, bus")
        return classes


class TrackStage(StrictModel):
    """Per-camera tracker in the style of ByteTrack: high-score detections first, then low-score ones."""

    high_score: float = Field(
        default=0.5, gt=0, lt=1,
        description="Detections at or above this score are matched first and may start tracks. Raising it starts "
        "fewer tracks on clutter but starts real ones later and leaves more objects to the low-score pass; lowering "
        "it gives ids to more false detections.",
    )
    low_score: float = Field(
        default=0.1, ge=0, lt=1,
        description="Detections from this score up to high_score only continue tracks that were matched in the "
        "frame before; lower scores are ignored. Lowering it bridges more partial occlusions but lets clutter "
        "continue a track. Scores under the detector's score_threshold never reach the tracker.",
    )
    match_iou: float = Field(
        default=0.3, gt=0, lt=1,
        description="Minimum IoU between a track's predicted box and a high-score detection. Lowering it follows "
        "fast or erratic objects but swaps ids between neighbours more; raising it starts new ids more often.",
    )
    low_match_iou: float = Field(
        default=0.5, gt=0, lt=1,
        description="Minimum IoU for a low-score detection to continue a track. Stricter than match_iou because low "
        "scores are less reliable; lowering it keeps more partly hidden objects, at more wrong continuations.",
    )
    lost_buffer_s: float = Field(
        default=1.0, gt=0, le=60,
        description="Seconds a track survives without a match, counted from the first analysed frame that missed "
        "it, keeping its id for an object that reappears; a track ends only after at least two analysed frames "
        "missed it, so sparse frames do not split tracks. Raising it bridges longer occlusions but keeps stale "
        "tracks, delays their end (and the plate of a track that ends), and keeps motion gating open longer.",
    )
    min_hits: int = Field(
        default=1, ge=1, le=10,
        description="Matches in consecutive frames before a track gets an id. Detections of a younger track carry "
        "track id -1. Raising it drops one-frame false detections but leaves each object's first frames without "
        "an id, so the plate and face stages skip them.",
    )

    @model_validator(mode="after")
    def _check_score_order(self) -> TrackStage:
        if self.low_score >= self.high_score:
            raise ValueError(f"low_score ({self.low_score:g}) must be below high_score ({self.high_score:g}). "
                             "Lower low_score or raise high_score")
        return self


VEHICLE_CLASSES = ("car", "bus", "truck", "motorcycle")


class PlateStage(StrictModel):
    """Licence plates on vehicle crops (or whole frames of plate cameras), voted per vehicle track."""

    detector: str = Field(min_length=1, description="Plate detector model name from models/manifest.toml.")
    recognizer: str = Field(min_length=1, description="Plate recogniser model name from models/manifest.toml.")
    double_row_recognizer: str | None = Field(
        default=None, min_length=1,
        description="Recogniser model name for plates that the detector finds to be double-row; unset: the "
        "recognizer above reads them too. Plates it reads take their colour from the pixels when the model "
        "has no colour head.",
    )
    vehicle_classes: list[str] = Field(
        default=["car", "bus", "truck"], min_length=1, description="Detected classes searched for plates."
    )
    min_vehicle_width_px: int = Field(
        default=80, ge=16, le=4000,
        description="Narrower vehicles are skipped; lower it for distant cameras at the cost of unreadable plates.",
    )
    detector_score_threshold: float = Field(default=0.3, gt=0, lt=1, description="Minimum plate detection score.")
    min_plate_width_px: int = Field(
        default=45, ge=0, le=2000,
        description="Reads of narrower plates are invalid, because their characters are under 10 px high. In a "
        "trial, one real plate scaled to 24 to 44 px wide read as five different provinces, and as its own from "
        "45 px on; the two-plate demo photo reads right at 50 px. 0 reads every plate.",
    )
    min_reads: int = Field(
        default=3, ge=1, le=50,
        description="Valid reads of a track before its plate is published; more reads give a steadier vote but later.",
    )
    min_confidence: float = Field(
        default=0.6, ge=0, le=1,
        description="Vote confidence needed to publish before the track ends; a track that ends publishes what it has.",
    )
    max_reads_per_track: int = Field(
        default=20, ge=1, le=500, description="Reads kept per track; older reads are dropped to bound memory."
    )
    recheck_every_frames: int = Field(
        default=5, ge=1, le=1000,
        description="After a track's plate is published, read it again on every Nth frame, so a different "
        "vehicle that continues the same track (a car following closely at a gate) still gets its own plate.",
    )
    repeat_window_s: float = Field(
        default=15.0, ge=0, le=3600,
        description="A plate that this camera published less than this many seconds of frame time ago is not "
        "published again, because a tracker that loses a vehicle in the dark or behind another one starts "
        "new tracks for it. Every sighting restarts the window. 0 publishes every track's plate.",
    )

    @field_validator("vehicle_classes")
    @classmethod
    def _check_vehicle_classes(cls, classes: list[str]) -> list[str]:
        unknown = [name for name in classes if name not in VEHICLE_CLASSES]
        if unknown:
            raise ValueError(f"{unknown} are not vehicle classes; allowed: {', '.join(VEHICLE_CLASSES)}")
        return classes


class FaceStage(StrictModel):
    """Faces on person crops (or whole frames of face cameras), matched against the face watchlist only."""

    detector: str = Field(min_length=1, description="Face detector model name from models/manifest.toml.")
    embedder: str = Field(min_length=1, description="Face embedding model name from models/manifest.toml.")
    min_person_height_px: int = Field(
        default=96, ge=16, le=4000,
        description="Shorter people are skipped; their faces are too small to match reliably.",
    )
    detector_score_threshold: float = Field(
        default=0.7, gt=0, lt=1,
        description="Minimum face detection score; 0.7 rejects car wheels that yunet_s_640 scores up to 0.68, "
        "while frontal faces in the test photos score 0.89 or more.",
    )
    crop_input_px: int = Field(
        default=320, ge=64, le=1280, multiple_of=32,
        description="Face detector input size for person crops; smaller is faster but misses small faces. "
        "Detectors with a fixed input size in the manifest ignore it.",
    )
    frame_input_px: int = Field(
        default=640, ge=64, le=2048, multiple_of=32, description="Face detector input size for whole frames.",
    )
    min_face_px: float = Field(
        default=32.0, ge=8, le=1000, description="Quality gate: minimum distance between the eyes, in pixels.",
    )
    min_sharpness: float = Field(
        default=200.0, ge=0,
        description="Quality gate: minimum variance of the Laplacian of the aligned face. Sharp test photos "
        "measure 734 or more and the same photos blurred (Gaussian sigma 4) at most 158; lower it for soft cameras.",
    )
    max_yaw_deg: float = Field(default=40.0, gt=0, le=90, description="Quality gate: maximum head turn.")
    max_pitch_deg: float = Field(default=30.0, gt=0, le=90, description="Quality gate: maximum head tilt.")
    max_faces_per_track: int = Field(
        default=10, ge=1, le=200,
        description="Faces of one person track that are embedded and matched; later faces are skipped.",
    )
    match_threshold: float | None = Field(
        default=None, gt=0, lt=1,
        description="Cosine similarity for a match; unset uses the embedder's threshold from the manifest.",
    )
    recheck_every_frames: int = Field(
        default=5, ge=1, le=1000,
        description="After max_faces_per_track or a hit, check the track's face on every Nth frame only, so "
        "another person who continues the same track is still matched.",
    )
    repeat_window_s: float = Field(
        default=15.0, ge=0, le=3600,
        description="A person that this camera matched less than this many seconds of frame time ago gets no "
        "new hit, because a tracker that loses a person behind others starts new tracks for them. Every match "
        "restarts the window. 0 sends a hit for every track.",
    )
    match_margin: float = Field(
        default=0.05, ge=0, lt=1,
        description="The best person must beat the second best by this much; raise it for fewer confusions.",
    )


class PipelineConfig(StrictModel):
    """One pipeline file."""

    name: str = Field(pattern=PIPELINE_NAME_PATTERN, description="Pipeline name; cameras refer to it.")
    detect: DetectStage
    track: TrackStage = Field(default_factory=TrackStage)
    plates: PlateStage | None = None
    faces: FaceStage | None = None
