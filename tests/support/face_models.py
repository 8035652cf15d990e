"""The shipped face models (YuNet detector, MobileFaceNet embedder) loaded from the shared assets."""

from __future__ import annotations

from edge.faces.analyzer import FaceAnalyzer
from edge.faces.detector import FaceDetector
from edge.faces.embedder import FaceEmbedder
from edge.faces.quality import QualityGate
from edge.models.manifest import load_manifest, resolve_file
from tests.conftest import MODEL_DIR


def load_face_analyzer(score_threshold: float = 0.7) -> FaceAnalyzer:
    """Return a FaceAnalyzer with yunet_s_640, mobilefacenet_128d and the default quality gate, on the CPU."""
    manifest = load_manifest()
    detector_entry, embedder_entry = manifest.model("yunet_s_640"), manifest.model("mobilefacenet_128d")
    detector = FaceDetector(detector_entry, resolve_file(detector_entry, [MODEL_DIR]), ["cpu"], score_threshold)
    embedder = FaceEmbedder(embedder_entry, resolve_file(embedder_entry, [MODEL_DIR]), ["cpu"])
    return FaceAnalyzer(detector, embedder, QualityGate())
