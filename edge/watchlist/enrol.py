"""Checking and embedding one enrolment photo, shared by `edge watchlist faces` and the web service.

A photo is accepted when it is a JPEG or PNG of at most MAX_PHOTO_BYTES and MAX_PHOTO_PIXELS and shows
exactly one face that passes the quality gate. Otherwise PhotoRejected carries one of REASON_CODES,
which the web page maps to its own texts, and an English detail for logs and the CLI.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from edge.core.regions import Region
from edge.faces.analyzer import FaceAnalyzer, FaceResult
from edge.faces.embedder import FaceEmbedder
from edge.faces.quality import QualityGate, QualityReport

# Photos larger than this are rejected before decoding; a passport-style photo is far smaller.
MAX_PHOTO_BYTES = 10 * 1024 * 1024
# Decoding needs about 3 bytes per pixel, so this caps one photo at about 120 MB of memory however
# well its file compresses. A 40-megapixel photo is larger than most phone cameras take.
MAX_PHOTO_PIXELS = 40_000_000
# Stored photos are re-encoded at this JPEG quality, so the database stores one format whatever was uploaded.
STORED_JPEG_QUALITY = 95

REASON_CODES = ("too_large", "too_many_pixels", "not_an_image", "no_face", "several_faces", "quality")
# Names of the quality checks in PhotoRejected.checks, one per limit of QualityGate plus the image edge.
QUALITY_CHECKS = ("size", "score", "sharpness", "yaw", "pitch", "cut_off")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers, which carry the image size: SOF0-3, SOF5-7, SOF9-11 and SOF13-15.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and the restart markers RST0-7.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


class PhotoRejected(Exception):
    """An enrolment photo that cannot be used.

    `reason_code` is one of REASON_CODES, `detail` an English sentence with the measured value and the
    limit, and `checks` the failed QUALITY_CHECKS when `reason_code` is "quality".
    """

    def __init__(self, reason_code: str, detail: str, checks: tuple[str, ...] = ()):
        if reason_code not in REASON_CODES:
            raise ValueError(f"unknown reason code {reason_code!r}; expected one of {', '.join(REASON_CODES)}")
        super().__init__(detail)
        self.reason_code = reason_code
        self.detail = detail
        self.checks = checks


@dataclass(frozen=True)
class EnrolledFace:
    """An accepted photo: the JPEG to store, the embedding of its one face and the model that made it."""

    jpeg: bytes
    embedding: np.ndarray  # (dimension,) float32, L2-normalised
    model_id: str
    face: FaceResult
    width: int
    height: int


def check_and_embed_photo(data: bytes, analyzer: FaceAnalyzer, embedder: FaceEmbedder) -> EnrolledFace:
    """Decode, check and embed one enrolment photo, or raise PhotoRejected with the reason.

    `embedder` must be the analyzer's embedder; its model id is returned beside the embedding so the
    caller stores both together.
    """
    if analyzer.embedder.model_id != embedder.model_id:
        raise ValueError(f"the analyzer embeds with {analyzer.embedder.model_id} but the embedder given is "
                         f"{embedder.model_id}; build the FaceAnalyzer with this embedder")
    image = decode_photo(data)
    face = _single_face(analyzer, image)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, STORED_JPEG_QUALITY])
    if not ok:
        raise PhotoRejected("not_an_image", "the decoded image cannot be encoded as JPEG; save it as an RGB "
                                            "JPEG and try again")
    height, width = image.shape[:2]
    return EnrolledFace(encoded.tobytes(), face.embedding, embedder.model_id, face, width, height)


def decode_photo(data: bytes) -> np.ndarray:
    """Return the BGR image of a JPEG or PNG photo after the size checks, or raise PhotoRejected."""
    if len(data) > MAX_PHOTO_BYTES:
        raise PhotoRejected("too_large", f"{len(data) / 1e6:.1f} MB is larger than the "
                                         f"{MAX_PHOTO_BYTES / 1e6:.0f} MB limit; use a smaller photo")
    size = image_size(data)
    if size is None:
        raise PhotoRejected("not_an_image", "not a JPEG or PNG image")
    width, height = size
    if width * height > MAX_PHOTO_PIXELS:
        raise PhotoRejected("too_many_pixels", f"the image is {width}x{height} pixels, more than the "
                                            f"{MAX_PHOTO_PIXELS / 1e6:.0f} megapixel limit; use a smaller photo")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PhotoRejected("not_an_image", "not a JPEG or PNG image, or the file is damaged or truncated")
    return image


def image_size(data: bytes) -> tuple[int, int] | None:
    """Return (width, height) from a PNG or JPEG header without decoding, or None for any other data."""
    if data.startswith(_PNG_SIGNATURE):
        # The IHDR chunk comes first: length (4 bytes), type, then width and height as big-endian uint32.
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:
            # A marker may be preceded by any number of 0xFF fill bytes.
            position += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        if marker in (0xD9, 0xDA):
            # End of image or start of scan before any frame header: no size to read.
            return None
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in _JPEG_SOF_MARKERS:
            if position + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        position += 2 + length
    return None


def _single_face(analyzer: FaceAnalyzer, image_bgr: np.ndarray) -> FaceResult:
    # Only faces that pass the gate count, so a small face in the background does not block enrolment.
    results = analyzer.analyze([Region.whole_frame(image_bgr)], whole_frames=True)
    if not results:
        raise PhotoRejected("no_face", "no face found; use a photo in which the face is clearly visible")
    passing = [result for result in results if result.quality.passed]
    if not passing:
        best = max(results, key=lambda result: result.quality.face_px)
        raise PhotoRejected("quality", f"the face fails the quality gate: {'; '.join(best.quality.reasons)}",
                            failed_checks(best, analyzer.gate, image_bgr.shape))
    if len(passing) > 1:
        raise PhotoRejected("several_faces", f"{len(passing)} faces pass the quality gate; crop the photo to the "
                                             "one person to enrol")
    return passing[0]


def failed_checks(face: FaceResult, gate: QualityGate, image_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Return the QUALITY_CHECKS that `face` fails, in the order check_quality lists its reasons."""
    report: QualityReport = face.quality
    failed = []
    if report.face_px < gate.min_face_px:
        failed.append("size")
    if report.score < gate.min_score:
        failed.append("score")
    if report.sharpness < gate.min_sharpness:
        failed.append("sharpness")
    if abs(report.yaw_deg) > gate.max_yaw_deg:
        failed.append("yaw")
    if abs(report.pitch_deg) > gate.max_pitch_deg:
        failed.append("pitch")
    height, width = image_shape[:2]
    landmarks = face.detection.landmarks_xy
    inside = (landmarks[:, 0] >= 0) & (landmarks[:, 0] < width) & (landmarks[:, 1] >= 0) & (landmarks[:, 1] < height)
    if not inside.all():
        failed.append("cut_off")
    return tuple(failed)
