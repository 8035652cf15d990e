"""Object detector: letterbox a batch of frames, run one inference call, decode, NMS, map to source pixels."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.config.pipeline import COCO_CLASSES, DetectStage
from edge.core.decode import Candidates, decode_yolov8, decode_yolox, yolox_grid
from edge.core.letterbox import InputSpec, Letterbox, boxes_to_source, letterbox_into, resize_scratch
from edge.core.nms import nms
from edge.models.manifest import ModelEntry
from edge.runtime.session import load_model

log = logging.getLogger(__name__)

DETECTOR_FAMILIES = ("yolox", "yolov8")


class DetectorError(Exception):
    """The detector cannot run this model or these inputs."""


@dataclass(frozen=True)
class Detections:
    """Detections in one frame, in source pixel coordinates."""

    boxes_xyxy: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64

    def __len__(self) -> int:
        return len(self.scores)

    def class_names(self) -> list[str]:
        return [COCO_CLASSES[i] for i in self.class_ids]


class Detector:
    """Batched object detector for the YOLOX and YOLOv8/YOLO11 output families."""

    def __init__(self, entry: ModelEntry, model_path: Path, stage: DetectStage, providers: list[str],
                 intra_op_threads: int = 0):
        if entry.family not in DETECTOR_FAMILIES:
            raise DetectorError(
                f"model '{entry.name}' has family '{entry.family}'; detection supports {', '.join(DETECTOR_FAMILIES)}"
            )
        if entry.letterbox == "none" or 0 in entry.input_size:
            raise DetectorError(f"model '{entry.name}' needs a fixed input_size and a letterbox in the manifest")
        self.entry = entry
        self.stage = stage
        loaded = load_model(model_path, providers, intra_op_threads)
        self.session = loaded.session
        self.provider = loaded.provider
        self.max_batch = stage.batch_size if loaded.dynamic_batch else 1
        self.input_name = self.session.get_inputs()[0].name
        width, height = entry.input_size
        self.spec = InputSpec(width, height, entry.colour_order, entry.mean, entry.std, entry.letterbox,
                              entry.pad_value)
        self.class_mask = np.array([name in stage.classes for name in COCO_CLASSES])
        self.grid, self.strides = yolox_grid(width, height)
        # One preallocated input buffer, reused for every call; the lock keeps two callers from sharing it.
        self._batch = np.zeros((self.max_batch, 3, height, width), dtype=np.float32)
        self._resize_scratch = resize_scratch(self.spec)
        self._lock = threading.Lock()

    def detect(self, frames_bgr: list[np.ndarray]) -> list[Detections]:
        """Detect objects in frames of any sizes; one inference call per `max_batch` frames."""
        results: list[Detections] = []
        with self._lock:
            for start in range(0, len(frames_bgr), self.max_batch):
                results.extend(self._detect_chunk(frames_bgr[start:start + self.max_batch]))
        return results

    def _detect_chunk(self, frames_bgr: list[np.ndarray]) -> list[Detections]:
        count = len(frames_bgr)
        letterboxes = [letterbox_into(frame, self.spec, self._batch[i], self._resize_scratch)
                       for i, frame in enumerate(frames_bgr)]
        (raw,) = self.session.run(None, {self.input_name: self._batch[:count]})[:1]
        return [self._postprocess(raw[i], letterbox) for i, letterbox in enumerate(letterboxes)]

    def _postprocess(self, raw: np.ndarray, letterbox: Letterbox) -> Detections:
        threshold = self.stage.score_threshold
        if self.entry.family == "yolox":
            candidates = decode_yolox(raw, self.grid, self.strides, self.class_mask, threshold)
        else:
            candidates = self._decode_yolov8_checked(raw, threshold)
        nms_classes = np.zeros_like(candidates.class_ids) if self.stage.class_agnostic_nms else candidates.class_ids
        keep = nms(candidates.boxes_xyxy, candidates.scores, nms_classes, self.stage.nms_iou_threshold)
        return Detections(
            boxes_xyxy=boxes_to_source(candidates.boxes_xyxy[keep], letterbox),
            scores=candidates.scores[keep],
            class_ids=candidates.class_ids[keep],
        )

    def _decode_yolov8_checked(self, raw: np.ndarray, threshold: float) -> Candidates:
        expected_rows = 4 + len(COCO_CLASSES)
        if raw.shape[0] != expected_rows:
            raise DetectorError(
                f"model '{self.entry.name}' output has {raw.shape[0]} rows per anchor, expected {expected_rows} "
                f"(4 box values + {len(COCO_CLASSES)} COCO classes) for the yolov8 family"
            )
        return decode_yolov8(raw, self.class_mask, threshold)
