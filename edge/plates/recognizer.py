"""CTC plate recognisers, batched across plates: text, per-character probabilities and plate colour."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.models.manifest import ModelEntry
from edge.runtime.session import load_model

RECOGNIZER_FAMILIES = ("plate_ctc_wq", "plate_ctc_paddle")
# PaddleOCR-style recognisers take any width; wider crops are squeezed to this many pixels.
PADDLE_MAX_WIDTH = 320
# A plate at least this many times the input height is shrunk by area averaging (see _interpolation).
AREA_SHRINK_MIN_RATIO = 2.0


class PlateRecognizerError(Exception):
    """The recogniser cannot run this model."""


@dataclass(frozen=True)
class PlateRead:
    """Raw recogniser output for one plate, before grammar checks."""

    text: str
    char_probs: tuple[float, ...]  # one per character of `text`
    colour: str | None
    colour_score: float
    # True when `colour` was estimated from the plate's pixels because the colour head contradicted the text.
    colour_from_pixels: bool = False

    @property
    def confidence(self) -> float:
        """Product of the character probabilities: the chance that every character is right."""
        return float(np.prod(self.char_probs)) if self.char_probs else 0.0


def ctc_greedy_decode(probs: np.ndarray, charset: str) -> tuple[str, tuple[float, ...]]:
    """Collapse repeats and drop blanks (index 0); each character keeps the best probability of its run."""
    best = probs.argmax(axis=1)
    text, char_probs = [], []
    previous = 0
    for step, index in enumerate(best):
        if index != 0 and index != previous:
            text.append(charset[index])
            char_probs.append(float(probs[step, index]))
        elif index != 0 and index == previous:
            char_probs[-1] = max(char_probs[-1], float(probs[step, index]))
        previous = index
    return "".join(text), tuple(char_probs)


def _softmax(values: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _to_probabilities(raw: np.ndarray) -> np.ndarray:
    """Accept softmax, log-softmax or logit outputs and return probabilities over the last axis."""
    if raw.min() >= 0 and np.allclose(raw.sum(axis=-1), 1.0, atol=1e-3):
        return raw
    if raw.max() <= 0 and np.allclose(np.exp(raw).sum(axis=-1), 1.0, atol=1e-3):
        return np.exp(raw)
    return _softmax(raw)


class PlateRecognizer:
    """Read upright plate images in batches of up to `batch_size`."""

    def __init__(self, entry: ModelEntry, model_path: Path, providers: list[str], batch_size: int = 16):
        if entry.family not in RECOGNIZER_FAMILIES:
            raise PlateRecognizerError(
                f"model '{entry.name}' has family '{entry.family}'; plate recognition supports "
                f"{', '.join(RECOGNIZER_FAMILIES)}"
            )
        if not entry.charset:
            raise PlateRecognizerError(f"model '{entry.name}' has no charset in the manifest")
        self.entry = entry
        self.charset = entry.charset
        loaded = load_model(model_path, providers)
        self.session = loaded.session
        self.batch_size = batch_size if loaded.dynamic_batch else 1
        self.input_name = self.session.get_inputs()[0].name
        self.height = entry.input_size[1]
        self.mean = np.asarray(entry.mean, dtype=np.float32)
        self.std = np.asarray(entry.std, dtype=np.float32)

    def read(self, plates_bgr: list[np.ndarray]) -> list[PlateRead]:
        reads: list[PlateRead] = []
        for start in range(0, len(plates_bgr), self.batch_size):
            reads.extend(self._read_chunk(plates_bgr[start:start + self.batch_size]))
        return reads

    def _input_width(self, plates_bgr: list[np.ndarray]) -> int:
        if self.entry.input_size[0]:
            return self.entry.input_size[0]
        aspects = [plate.shape[1] / max(plate.shape[0], 1) for plate in plates_bgr]
        return min(PADDLE_MAX_WIDTH, max(8, int(round(max(aspects) * self.height))))

    def _prepare(self, plates_bgr: list[np.ndarray]) -> np.ndarray:
        width = self._input_width(plates_bgr)
        batch = np.zeros((len(plates_bgr), 3, self.height, width), dtype=np.float32)
        for index, plate in enumerate(plates_bgr):
            if self.entry.input_size[0]:
                plate_width = width
            else:
                # Keep the aspect ratio and leave the rest zero (the normalised mid-grey) on the right.
                plate_width = min(width, max(1, int(round(plate.shape[1] / max(plate.shape[0], 1) * self.height))))
            resized = cv2.resize(plate, (plate_width, self.height), interpolation=self._interpolation(plate))
            resized = resized.astype(np.float32)
            if self.entry.colour_order == "rgb":
                resized = resized[:, :, ::-1]
            batch[index, :, :, :plate_width] = ((resized - self.mean) / self.std).transpose(2, 0, 1)
        return batch

    def _interpolation(self, plate_bgr: np.ndarray) -> int:
        # Linear interpolation skips pixels when it shrinks a plate to half its height or less, and on large
        # plates the aliasing turned 0 into Q. Milder shrinking stays linear, as the reads were measured.
        if plate_bgr.shape[0] >= AREA_SHRINK_MIN_RATIO * self.height:
            return cv2.INTER_AREA
        return cv2.INTER_LINEAR

    def _read_chunk(self, plates_bgr: list[np.ndarray]) -> list[PlateRead]:
        outputs = self.session.run(None, {self.input_name: self._prepare(plates_bgr)})
        sequence = _to_probabilities(outputs[0])
        colours = _softmax(outputs[1]) if len(outputs) > 1 and self.entry.colours else None
        reads = []
        for index in range(len(plates_bgr)):
            text, char_probs = ctc_greedy_decode(sequence[index], self.charset)
            colour, colour_score = None, 0.0
            if colours is not None:
                best = int(colours[index].argmax())
                colour, colour_score = self.entry.colours[best], float(colours[index, best])
            reads.append(PlateRead(text=text, char_probs=char_probs, colour=colour, colour_score=colour_score))
        return reads
