"""ArcFace-style face embedders: aligned 112x112 crops in, L2-normalised embeddings out, batched across faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.models.manifest import ModelEntry
from edge.runtime.session import load_model

EMBEDDER_FAMILIES = ("arcface",)
# Floor for the embedding norm, so an all-zero output divides to zeros instead of NaN.
MIN_NORM = 1e-12


class FaceEmbedderError(Exception):
    """The embedder cannot run this model or these inputs."""


class FaceEmbedder:
    """Turn aligned faces (see edge.faces.align) into unit-length embeddings compared by cosine similarity.

    The manifest entry sets the colour order and the mean and std, and `_to_input` is the only place that applies
    them.
    """

    def __init__(self, entry: ModelEntry, model_path: Path, providers: list[str], batch_size: int = 16):
        if entry.family not in EMBEDDER_FAMILIES:
            raise FaceEmbedderError(
                f"model '{entry.name}' has family '{entry.family}', but face embedding supports only "
                f"{', '.join(EMBEDDER_FAMILIES)}"
            )
        if batch_size < 1:
            raise FaceEmbedderError(f"batch_size must be at least 1, received {batch_size}")
        self.entry = entry
        loaded = load_model(model_path, providers)
        self.session = loaded.session
        self.provider = loaded.provider
        self.batch_size = batch_size if loaded.dynamic_batch else 1
        self.input_name = self.session.get_inputs()[0].name
        self.width, self.height = self._input_size()
        self.mean = np.asarray(entry.mean, dtype=np.float32)
        self.std = np.asarray(entry.std, dtype=np.float32)
        self._dimension = self._output_dimension()

    @property
    def dimension(self) -> int:
        """Length of one embedding, read from the model's output."""
        return self._dimension

    @property
    def model_id(self) -> str:
        """Model name and sha256 prefix, stored beside each gallery embedding because embeddings from different
        models cannot be compared."""
        return f"{self.entry.name}:{self.entry.sha256[:12]}"

    def embed(self, aligned_faces_bgr: list[np.ndarray]) -> np.ndarray:
        """Return an (N, dimension) float32 array of L2-normalised embeddings, one row per face, in input order."""
        if not aligned_faces_bgr:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self._check_faces(aligned_faces_bgr)
        chunks = []
        for start in range(0, len(aligned_faces_bgr), self.batch_size):
            batch = self._to_input(aligned_faces_bgr[start:start + self.batch_size])
            chunks.append(self.session.run(None, {self.input_name: batch})[0])
        return _l2_normalise(np.concatenate(chunks).reshape(len(aligned_faces_bgr), -1))

    def _input_size(self) -> tuple[int, int]:
        width, height = self.entry.input_size
        if width and height:
            return width, height
        shape = self.session.get_inputs()[0].shape
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            return shape[3], shape[2]
        raise FaceEmbedderError(f"model '{self.entry.name}' needs a fixed input size, but the manifest gives "
                                f"{list(self.entry.input_size)} and the graph input shape is {shape}, so set "
                                "input_size in models/manifest.toml")

    def _output_dimension(self) -> int:
        size = self.session.get_outputs()[0].shape[-1]
        if isinstance(size, int):
            return size
        # Some exports leave the embedding size symbolic; one blank face reveals it.
        blank = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        return int(self.session.run(None, {self.input_name: self._to_input([blank])})[0].shape[-1])

    def _check_faces(self, faces_bgr: list[np.ndarray]) -> None:
        expected = (self.height, self.width, 3)
        for index, face in enumerate(faces_bgr):
            if face.shape != expected or face.dtype != np.uint8:
                raise FaceEmbedderError(
                    f"face {index} must be an aligned {self.width}x{self.height} BGR uint8 crop of shape {expected}, "
                    f"received shape {face.shape} dtype {face.dtype}; align it with edge.faces.align.align_face"
                )

    def _to_input(self, faces_bgr: list[np.ndarray]) -> np.ndarray:
        """Build the NCHW float32 batch: channel order, then (pixel - mean) / std, as the manifest entry states."""
        batch = np.stack(faces_bgr).astype(np.float32)
        if self.entry.colour_order == "rgb":
            batch = batch[..., ::-1]
        batch = (batch - self.mean) / self.std
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def _l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, MIN_NORM)).astype(np.float32)
