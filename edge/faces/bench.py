"""`edge bench faces`: how well a face embedder separates people, on photos sorted into one folder per person.

Every pair of faces is compared by cosine similarity. The report gives the same-person and different-person
distributions, the lowest threshold with zero false accepts (threshold_at_zero_far) and the share of same-person
pairs it still accepts (tar_at_zero_far, the true-accept rate).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.faces.align import align_face
from edge.faces.embedder import FaceEmbedder, FaceEmbedderError
from edge.faces.quality import QualityGate, check_quality, eye_distance_px
from edge.faces.detector import FaceDetector, FaceDetectorError
from edge.models.manifest import AssetError, load_manifest, model_dirs, resolve_file
from edge.runtime.session import SessionError

DEFAULT_DETECTOR = "yunet_s_640"
DEFAULT_EMBEDDER = "mobilefacenet_128d"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# Thresholds are reported to 4 decimals, rounded up so that they stay above every different-person similarity.
THRESHOLD_STEP = 1e-4


class BenchError(Exception):
    """The bench cannot run on these models or this folder."""


@dataclass(frozen=True)
class Distribution:
    """Summary of a set of cosine similarities."""

    pairs: int
    min: float | None
    median: float | None
    max: float | None

    @classmethod
    def of(cls, values: np.ndarray) -> Distribution:
        if values.size == 0:
            return cls(0, None, None, None)
        return cls(int(values.size), round(float(values.min()), 4), round(float(np.median(values)), 4),
                   round(float(values.max()), 4))


@dataclass
class ImageOutcome:
    file: str
    identity: str
    faces_found: int
    quality_reasons: list[str] = field(default_factory=list)


@dataclass
class FaceSet:
    """The largest face of every photo that has one, with timings."""

    identities: list[str] = field(default_factory=list)
    aligned: list[np.ndarray] = field(default_factory=list)
    outcomes: list[ImageOutcome] = field(default_factory=list)
    detect_seconds: float = 0.0
    align_seconds: float = 0.0


def _identity_photos(identities_dir: Path) -> list[tuple[str, Path]]:
    if not identities_dir.is_dir():
        raise BenchError(f"{identities_dir} is not a folder. Pass a folder that contains one sub-folder of photos "
                         "per person")
    photos = [(folder.name, path)
              for folder in sorted(p for p in identities_dir.iterdir() if p.is_dir())
              for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    if not photos:
        raise BenchError(f"{identities_dir} has no photos in sub-folders. Pass a folder that contains one sub-folder "
                         "of photos per person")
    return photos


def collect_faces(detector: FaceDetector, identities_dir: Path, gate: QualityGate) -> FaceSet:
    """Detect and align the largest face in each photo, taken as the one whose eyes are furthest apart."""
    faces = FaceSet()
    for identity, path in _identity_photos(identities_dir):
        image = cv2.imread(str(path))
        if image is None:
            raise BenchError(f"failed to decode {path} as an image; replace or remove the file")
        started = time.perf_counter()
        detections = detector.detect([image])[0]
        faces.detect_seconds += time.perf_counter() - started
        outcome = ImageOutcome(f"{identity}/{path.name}", identity, len(detections))
        faces.outcomes.append(outcome)
        if not detections:
            continue

        largest = max(detections, key=lambda d: eye_distance_px(d.landmarks_xy))
        started = time.perf_counter()
        aligned = align_face(image, largest.landmarks_xy)
        faces.align_seconds += time.perf_counter() - started
        outcome.quality_reasons = list(check_quality(image, largest, aligned, gate).reasons)
        faces.identities.append(identity)
        faces.aligned.append(aligned)
    return faces


def pair_similarities(identities: list[str], embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the cosine similarities of every same-person pair and every different-person pair."""
    similarities = embeddings @ embeddings.T
    labels = np.asarray(identities)
    first, second = np.triu_indices(len(identities), k=1)
    same = labels[first] == labels[second]
    pair_values = similarities[first, second]
    return pair_values[same], pair_values[~same]


def threshold_at_zero_false_accepts(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """Return the lowest 4-decimal threshold above every different-person similarity, and the share of same-person
    pairs at or above it (the true-accept rate at zero false accepts)."""
    highest_different = float(different.max())
    threshold = math.floor(highest_different / THRESHOLD_STEP + 1) * THRESHOLD_STEP
    while threshold <= highest_different:  # guards against floating-point rounding in the line above
        threshold += THRESHOLD_STEP
    threshold = round(threshold, 4)
    return threshold, round(float((same >= threshold).mean()), 4)


def summarise(args: argparse.Namespace, model_id: str, faces: FaceSet, embeddings: np.ndarray,
              embed_seconds: float) -> dict:
    same, different = pair_similarities(faces.identities, embeddings)
    if same.size == 0 or different.size == 0:
        raise BenchError(f"{args.identities} gave {same.size} same-person and {different.size} different-person "
                         "pairs, but the bench needs at least one of each, so add a second person or a second "
                         "photo of one person")
    threshold, true_accept_rate = threshold_at_zero_false_accepts(same, different)
    return {
        "detector": args.detector,
        "embedder": model_id,
        "identities": len(set(faces.identities)),
        "images": len(faces.outcomes),
        "faces": len(faces.aligned),
        "images_without_face": sum(o.faces_found == 0 for o in faces.outcomes),
        "quality_failures": sum(bool(o.quality_reasons) for o in faces.outcomes),
        "same_person": asdict(Distribution.of(same)),
        "different_person": asdict(Distribution.of(different)),
        "tar_at_zero_far": true_accept_rate,
        "threshold_at_zero_far": threshold,
        "ms_per_face": round(1000 * (faces.align_seconds + embed_seconds) / max(len(faces.aligned), 1), 2),
        "detect_ms_per_image": round(1000 * faces.detect_seconds / max(len(faces.outcomes), 1), 2),
    }


def run_bench(args: argparse.Namespace) -> tuple[dict, list[ImageOutcome]]:
    manifest = load_manifest()
    detector_entry, embedder_entry = manifest.model(args.detector), manifest.model(args.embedder)
    detector = FaceDetector(detector_entry, resolve_file(detector_entry, model_dirs()), args.providers,
                            QualityGate().min_score)
    embedder = FaceEmbedder(embedder_entry, resolve_file(embedder_entry, model_dirs()), args.providers)
    # One untimed call each, so session start-up is not charged to the first face.
    detector.detect([np.zeros((64, 64, 3), dtype=np.uint8)])
    embedder.embed([np.zeros((embedder.height, embedder.width, 3), dtype=np.uint8)])

    faces = collect_faces(detector, args.identities, QualityGate())
    started = time.perf_counter()
    embeddings = embedder.embed(faces.aligned)
    embed_seconds = time.perf_counter() - started
    return summarise(args, embedder.model_id, faces, embeddings, embed_seconds), faces.outcomes


def _print_text(summary: dict, outcomes: list[ImageOutcome]) -> None:
    for outcome in outcomes:
        if outcome.faces_found == 0:
            print(f"NO FACE {outcome.file}")
        elif outcome.quality_reasons:
            print(f"LOW QUALITY {outcome.file}: {'; '.join(outcome.quality_reasons)}")
    for key, value in summary.items():
        if isinstance(value, dict):
            value = "  ".join(f"{name} {number}" for name, number in value.items())
        print(f"{key:22} {value}")


def cmd_bench_faces(args: argparse.Namespace) -> int:
    try:
        summary, outcomes = run_bench(args)
    except (AssetError, BenchError, FaceDetectorError, FaceEmbedderError, SessionError, ValueError, OSError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps({**summary, "images_detail": [asdict(o) for o in outcomes]}, indent=2))
    else:
        _print_text(summary, outcomes)
    return 0


def add_bench_faces_parser(bench_commands: argparse._SubParsersAction) -> None:
    """Add `faces` to the sub-commands of `edge bench`."""
    faces = bench_commands.add_parser(
        "faces", help="face embedding: similarity of same-person and different-person photo pairs")
    faces.add_argument("--identities", type=Path, required=True,
                       help="folder with one sub-folder of photos per person, named after the person")
    faces.add_argument("--detector", default=DEFAULT_DETECTOR,
                       help=f"face detector model name (default: {DEFAULT_DETECTOR})")
    faces.add_argument("--embedder", default=DEFAULT_EMBEDDER,
                       help=f"face embedder model name (default: {DEFAULT_EMBEDDER})")
    faces.add_argument("--providers", nargs="+", default=["cpu"], choices=["tensorrt", "cuda", "cpu"],
                       help="ONNX Runtime providers in order of preference (default: cpu)")
    faces.add_argument("--json", action="store_true", help="print the results as JSON")
    faces.set_defaults(handler=cmd_bench_faces)


def main(argv: list[str] | None = None) -> int:
    """Run `edge bench faces` on its own: `python -m edge.faces.bench faces --identities DIR`."""
    parser = argparse.ArgumentParser(prog="edge bench")
    add_bench_faces_parser(parser.add_subparsers(dest="bench_command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
