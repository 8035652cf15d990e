"""Face detectors that return a box and five landmarks per face, in source image pixels.

Families, all run in ONNX Runtime on a top-left letterbox of `input_size`:
- yunet: per stride 8/16/32, outputs cls and obj (N, cells, 1), bbox (N, cells, 4) and kps (N, cells, 10),
  one anchor per cell. The score is sqrt(cls * obj) with both clipped to 0..1. The box centre is
  (cell + bbox[:2]) * stride, its size exp(bbox[2:]) * stride, and a landmark (cell + kps) * stride.
  This matches cv2.FaceDetectorYN of OpenCV 4.14 within 0.001 px on the test photos.
- scrfd: per stride 8/16/32, outputs score (N, 2 * cells, 1), bbox (N, 2 * cells, 4) and kps (N, 2 * cells, 10),
  two anchors per cell placed on the cell's top-left corner. Boxes are distances (left, top, right, bottom)
  and landmarks are offsets, both in units of the stride.
- retinaface: outputs loc (N, P, 4), conf (N, P, 2) and landmarks (N, P, 10) over P prior boxes with
  min sizes 16/32, 64/128 and 256/512 at steps 8/16/32, decoded with variances 0.1 and 0.2.

Every family emits the landmarks of an upright face in LANDMARK_NAMES order, so none is reordered.
The OpenCV documentation names YuNet's points from the person's view (right eye first), which are the
same points: the person's right eye is the left eye in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.letterbox import InputSpec, Letterbox, boxes_to_source, letterbox_into
from edge.core.nms import nms
from edge.faces.types import FaceDetection
from edge.models.manifest import ModelEntry
from edge.runtime.session import load_model

FACE_DETECTOR_FAMILIES = ("yunet", "scrfd", "retinaface")
STRIDES = (8, 16, 32)
SCRFD_ANCHORS_PER_CELL = 2
RETINAFACE_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
RETINAFACE_VARIANCE = (0.1, 0.2)
LANDMARK_COUNT = 5


class FaceDetectorError(Exception):
    """The face detector cannot run this model or these images."""


@dataclass(frozen=True)
class _StrideHead:
    """Indices of one stride's outputs in the session's output list."""

    stride: int
    # cls and obj for yunet, in either order because the score uses their product, or score alone for scrfd.
    score_outputs: tuple[int, ...]
    box_output: int
    landmark_output: int


@dataclass(frozen=True)
class _PriorOutputs:
    """Indices of the RetinaFace outputs in the session's output list."""

    loc: int
    conf: int
    landmarks: int


@dataclass(frozen=True)
class _Candidates:
    """Faces of one image above the score threshold, before NMS, in network input pixels."""

    boxes_xyxy: np.ndarray  # (K, 4)
    landmarks_xy: np.ndarray  # (K, 5, 2)
    scores: np.ndarray  # (K,)


class FaceDetector:
    """Face detector for the yunet, scrfd and retinaface families, with five landmarks per face.

    A list of images runs as one batch when the graph has a working batch dimension, else one image at a time.
    NOTE: the families' scores are on different scales. On the test photos, real faces score 0.74-0.90 with
    scrfd_500m_bnkps and 0.98-1.00 with retinaface_mbnet025, while yunet_s_640 also scores two background
    patches 0.71 and 0.62, so one score_threshold does not suit every family.
    """

    def __init__(self, entry: ModelEntry, model_path: Path, providers: list[str], score_threshold: float = 0.6,
                 nms_iou_threshold: float = 0.4, input_size: tuple[int, int] = (640, 640)):
        if entry.family not in FACE_DETECTOR_FAMILIES:
            raise FaceDetectorError(
                f"model '{entry.name}' has family '{entry.family}', but face detection supports only "
                f"{', '.join(FACE_DETECTOR_FAMILIES)}: choose a model of one of these families"
            )
        width, height = input_size
        if width <= 0 or height <= 0 or width % STRIDES[-1] or height % STRIDES[-1]:
            raise FaceDetectorError(
                f"model '{entry.name}': input_size must be positive multiples of {STRIDES[-1]} so every stride "
                f"has a whole grid, got {width}x{height}"
            )
        self.entry = entry
        self.score_threshold = score_threshold
        self.nms_iou_threshold = nms_iou_threshold
        self.input_width, self.input_height = width, height
        # Every image keeps its aspect ratio, so faces are not stretched. Padding goes right and bottom,
        # whatever value the manifest's letterbox field has, so a point maps back with a scale alone.
        self.spec = InputSpec(width, height, entry.colour_order, entry.mean, entry.std, "top-left",
                              entry.pad_value)

        loaded = load_model(model_path, providers)
        self.session = loaded.session
        self.provider = loaded.provider
        self.input_name = self.session.get_inputs()[0].name
        self._check_graph_input_size()
        self._input = np.zeros((1, 3, height, width), dtype=np.float32)

        self._prepare_decoder([output.shape for output in self._run(self._input)])
        # NOTE: these graphs have run only on the CPU provider. The CUDA and TensorRT paths are untested.
        self.batched = loaded.dynamic_batch and self._keeps_batch_dimension()

    def detect(self, images_bgr: list[np.ndarray]) -> list[list[FaceDetection]]:
        """Return the faces of each image, highest score first."""
        for index, image in enumerate(images_bgr):
            _check_image(self.entry.name, index, image)
        if not images_bgr:
            return []
        if self.batched:
            return self._detect_batch(images_bgr)
        return [self._detect_batch([image])[0] for image in images_bgr]

    def _detect_batch(self, images_bgr: list[np.ndarray]) -> list[list[FaceDetection]]:
        if self._input.shape[0] != len(images_bgr):
            self._input = np.zeros((len(images_bgr), 3, self.input_height, self.input_width), dtype=np.float32)
        letterboxes = [letterbox_into(image, self.spec, self._input[i]) for i, image in enumerate(images_bgr)]
        outputs = self._run(self._input)
        return [self._finish(self._decode(outputs, item), letterbox) for item, letterbox in enumerate(letterboxes)]

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: batch})

    def _check_graph_input_size(self) -> None:
        graph_height, graph_width = self.session.get_inputs()[0].shape[2:4]
        fixed = isinstance(graph_width, int) and isinstance(graph_height, int)
        if fixed and (graph_width, graph_height) != (self.input_width, self.input_height):
            raise FaceDetectorError(
                f"model '{self.entry.name}' has a fixed input of {graph_width}x{graph_height}, but input_size "
                f"is {self.input_width}x{self.input_height}. Pass input_size=({graph_width}, {graph_height})"
            )

    def _prepare_decoder(self, output_shapes: list[tuple[int, ...]]) -> None:
        """Find which output is which from the shapes of a batch-of-one run, and build the anchor grids."""
        name, width, height = self.entry.name, self.input_width, self.input_height
        if self.entry.family == "retinaface":
            self._prior_outputs = _locate_prior_outputs(name, output_shapes, width, height)
            self._priors = _retinaface_priors(width, height)
            return
        per_cell = SCRFD_ANCHORS_PER_CELL if self.entry.family == "scrfd" else 1
        score_count = 2 if self.entry.family == "yunet" else 1
        self._heads = _locate_stride_heads(name, output_shapes, width, height, per_cell, score_count)
        self._cells = {stride: _cell_grid(width, height, stride, per_cell) for stride in STRIDES}

    def _keeps_batch_dimension(self) -> bool:
        """Run a batch of two and check that every output has two items.

        The fixed-size YuNet graphs accept a batch of two but return (1, 2 * cells, C), because their Reshape
        nodes hard-code the shape (1, -1, C). Accepting the batch therefore does not prove that batching works.
        """
        probe = np.zeros((2, 3, self.input_height, self.input_width), dtype=np.float32)
        return all(output.shape[0] == 2 for output in self._run(probe))

    def _decode(self, outputs: list[np.ndarray], item: int) -> _Candidates:
        if self.entry.family == "yunet":
            return _decode_yunet(outputs, item, self._heads, self._cells, self.score_threshold)
        if self.entry.family == "scrfd":
            return _decode_scrfd(outputs, item, self._heads, self._cells, self.score_threshold)
        return _decode_retinaface(outputs, item, self._prior_outputs, self._priors, self.score_threshold)

    def _finish(self, candidates: _Candidates, letterbox: Letterbox) -> list[FaceDetection]:
        """Suppress overlapping faces and map the rest to source pixels."""
        keep = nms(candidates.boxes_xyxy, candidates.scores, np.zeros(len(candidates.scores), dtype=np.int64),
                   self.nms_iou_threshold)
        boxes = boxes_to_source(candidates.boxes_xyxy[keep], letterbox)
        landmarks = _points_to_source(candidates.landmarks_xy[keep], letterbox)
        faces = []
        for box, points, score in zip(boxes, landmarks, candidates.scores[keep]):
            # A face found only in the padding clips to an empty box.
            if box[2] > box[0] and box[3] > box[1]:
                faces.append(FaceDetection(box_xyxy=box, landmarks_xy=points, score=float(score)))
        return faces


def _check_image(model_name: str, index: int, image: np.ndarray) -> None:
    valid = (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
             and image.dtype == np.uint8 and image.shape[0] > 0 and image.shape[1] > 0)
    if not valid:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise FaceDetectorError(
            f"model '{model_name}': image {index} must be a non-empty HxWx3 uint8 BGR array, "
            f"got shape {shape} dtype {dtype}"
        )


def _points_to_source(points_xy: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Map (K, 5, 2) points from network input pixels to source pixels.

    Unlike boxes, points are not clipped, because a landmark of a face cut by the frame edge can lie outside
    the frame and alignment needs its true position.
    """
    out = np.empty_like(points_xy, dtype=np.float32)
    out[..., 0] = (points_xy[..., 0] - letterbox.pad_x) / letterbox.scale_x
    out[..., 1] = (points_xy[..., 1] - letterbox.pad_y) / letterbox.scale_y
    return out


def _cell_grid(width: int, height: int, stride: int, per_cell: int) -> np.ndarray:
    """Return the (column, row) index of each output row of a stride, row-major, `per_cell` rows per cell."""
    rows, cols = height // stride, width // stride
    ys, xs = np.mgrid[:rows, :cols]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    return np.repeat(grid, per_cell, axis=0)


def _locate_stride_heads(model_name: str, shapes: list[tuple[int, ...]], width: int, height: int,
                         per_cell: int, score_count: int) -> list[_StrideHead]:
    """Match outputs to strides by their row count and to score, box and landmarks by their last dimension."""
    heads = []
    for stride in STRIDES:
        rows = (width // stride) * (height // stride) * per_cell
        by_channels: dict[int, list[int]] = {1: [], 4: [], LANDMARK_COUNT * 2: []}
        for index, shape in enumerate(shapes):
            if len(shape) == 3 and shape[1] == rows and shape[2] in by_channels:
                by_channels[shape[2]].append(index)
        counts = [len(by_channels[1]), len(by_channels[4]), len(by_channels[LANDMARK_COUNT * 2])]
        if counts != [score_count, 1, 1]:
            raise FaceDetectorError(
                f"model '{model_name}': expected {score_count} score, 1 box and 1 landmark output with {rows} rows "
                f"for stride {stride} at {width}x{height}, found {counts[0]}, {counts[1]} and {counts[2]} "
                f"among output shapes {shapes}"
            )
        heads.append(_StrideHead(stride, tuple(by_channels[1]), by_channels[4][0],
                                 by_channels[LANDMARK_COUNT * 2][0]))
    return heads


def _locate_prior_outputs(model_name: str, shapes: list[tuple[int, ...]], width: int,
                          height: int) -> _PriorOutputs:
    """Match the RetinaFace outputs by their last dimension: 4 for loc, 2 for conf, 10 for landmarks.

    The landmark output of retinaface_mbnet0.25.onnx is named "iou", so names cannot be trusted.
    """
    rows = sum(math.ceil(width / step) * math.ceil(height / step) * len(sizes)
               for step, sizes in zip(STRIDES, RETINAFACE_MIN_SIZES))
    by_channels = {shape[2]: index for index, shape in enumerate(shapes) if len(shape) == 3 and shape[1] == rows}
    if len(shapes) != 3 or sorted(by_channels) != [2, 4, LANDMARK_COUNT * 2]:
        raise FaceDetectorError(
            f"model '{model_name}': expected 3 outputs of {rows} rows with 4, 2 and 10 channels at "
            f"{width}x{height}, found output shapes {shapes}"
        )
    return _PriorOutputs(loc=by_channels[4], conf=by_channels[2], landmarks=by_channels[LANDMARK_COUNT * 2])


def _retinaface_priors(width: int, height: int) -> np.ndarray:
    """Return prior boxes (P, 4) as centre x, centre y, width, height in network input pixels."""
    priors = []
    for step, min_sizes in zip(STRIDES, RETINAFACE_MIN_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.mgrid[:rows, :cols]
        centres = np.stack([(xs.ravel() + 0.5) * step, (ys.ravel() + 0.5) * step], axis=1)
        for_each_size = np.repeat(centres, len(min_sizes), axis=0)
        sizes = np.tile(np.asarray(min_sizes, dtype=np.float64), rows * cols)
        priors.append(np.column_stack([for_each_size, sizes, sizes]))
    return np.concatenate(priors).astype(np.float32)


def _empty_candidates() -> _Candidates:
    return _Candidates(np.zeros((0, 4), np.float32), np.zeros((0, LANDMARK_COUNT, 2), np.float32),
                       np.zeros(0, np.float32))


def _concatenate(parts: list[_Candidates]) -> _Candidates:
    if not parts:
        return _empty_candidates()
    return _Candidates(np.concatenate([part.boxes_xyxy for part in parts]),
                       np.concatenate([part.landmarks_xy for part in parts]),
                       np.concatenate([part.scores for part in parts]))


def _decode_yunet(outputs: list[np.ndarray], item: int, heads: list[_StrideHead],
                  cells: dict[int, np.ndarray], threshold: float) -> _Candidates:
    parts = []
    for head in heads:
        cls_scores, obj_scores = (np.clip(outputs[index][item, :, 0], 0.0, 1.0) for index in head.score_outputs)
        scores = np.sqrt(cls_scores * obj_scores)
        keep = np.flatnonzero(scores >= threshold)
        if keep.size == 0:
            continue
        grid = cells[head.stride][keep]
        box = outputs[head.box_output][item, keep]
        centres = (grid + box[:, :2]) * head.stride
        half_sizes = np.exp(box[:, 2:]) * head.stride / 2
        offsets = outputs[head.landmark_output][item, keep].reshape(-1, LANDMARK_COUNT, 2)
        landmarks = (grid[:, None, :] + offsets) * head.stride
        boxes = np.concatenate([centres - half_sizes, centres + half_sizes], axis=1)
        parts.append(_Candidates(boxes.astype(np.float32), landmarks.astype(np.float32), scores[keep]))
    return _concatenate(parts)


def _decode_scrfd(outputs: list[np.ndarray], item: int, heads: list[_StrideHead],
                  cells: dict[int, np.ndarray], threshold: float) -> _Candidates:
    parts = []
    for head in heads:
        scores = outputs[head.score_outputs[0]][item, :, 0]
        keep = np.flatnonzero(scores >= threshold)
        if keep.size == 0:
            continue
        # SCRFD anchors sit on the cell's top-left corner, not its centre.
        anchors = cells[head.stride][keep] * head.stride
        distances = outputs[head.box_output][item, keep] * head.stride
        boxes = np.concatenate([anchors - distances[:, :2], anchors + distances[:, 2:]], axis=1)
        offsets = outputs[head.landmark_output][item, keep].reshape(-1, LANDMARK_COUNT, 2)
        landmarks = anchors[:, None, :] + offsets * head.stride
        parts.append(_Candidates(boxes.astype(np.float32), landmarks.astype(np.float32), scores[keep]))
    return _concatenate(parts)


def _decode_retinaface(outputs: list[np.ndarray], item: int, layout: _PriorOutputs, priors: np.ndarray,
                       threshold: float) -> _Candidates:
    # conf is already a softmax over (background, face).
    scores = outputs[layout.conf][item, :, 1]
    keep = np.flatnonzero(scores >= threshold)
    if keep.size == 0:
        return _empty_candidates()
    centres, sizes = priors[keep, :2], priors[keep, 2:]
    loc = outputs[layout.loc][item, keep]
    box_centres = centres + loc[:, :2] * RETINAFACE_VARIANCE[0] * sizes
    half_sizes = sizes * np.exp(loc[:, 2:] * RETINAFACE_VARIANCE[1]) / 2
    boxes = np.concatenate([box_centres - half_sizes, box_centres + half_sizes], axis=1)
    offsets = outputs[layout.landmarks][item, keep].reshape(-1, LANDMARK_COUNT, 2)
    landmarks = centres[:, None, :] + offsets * RETINAFACE_VARIANCE[0] * sizes[:, None, :]
    return _Candidates(boxes.astype(np.float32), landmarks.astype(np.float32), scores[keep])
