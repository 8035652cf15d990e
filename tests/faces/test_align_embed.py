"""Alignment to the ArcFace template and embedding with the real MobileFaceNet, on the test identity photos.

Landmarks come from OpenCV's YuNet wrapper (`yunet_detections`), not from edge.faces.detector, so these tests do
not depend on the project's detector.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from edge.faces.align import ARCFACE_TEMPLATE_112, AlignmentError, align_face, similarity_transform
from edge.faces.embedder import FaceEmbedder, FaceEmbedderError
from edge.faces.types import FaceDetection
from edge.models.manifest import load_manifest, resolve_file
from tests.conftest import ASSETS, MODEL_DIR

FACES = ASSETS / "images" / "faces"
IDENTITIES = ("obama", "biden", "kit_harington", "rose_leslie", "alex_lacamoire")
IDENTITY_PHOTOS = [path for name in IDENTITIES for path in sorted((FACES / name).glob("*.jpg"))]
YUNET_PATH = MODEL_DIR / "face" / "yunet_s_640_640.onnx"


def yunet_detections(image_bgr: np.ndarray, score_threshold: float = 0.6) -> list[FaceDetection]:
    """Detect faces with OpenCV's reference YuNet and convert each row to the project's FaceDetection."""
    height, width = image_bgr.shape[:2]
    detector = cv2.FaceDetectorYN.create(str(YUNET_PATH), "", (width, height), score_threshold, 0.3, 5000)
    detector.setInputSize((width, height))
    _, rows = detector.detect(image_bgr)
    if rows is None:
        return []
    detections = []
    for row in rows:
        x, y, w, h = row[:4]
        # YuNet lists the person's right eye and mouth corner first, which are the image-left ones, so the
        # order already matches LANDMARK_NAMES, as test_yunet_landmarks_in_image_order checks.
        detections.append(FaceDetection(box_xyxy=np.array([x, y, x + w, y + h], dtype=np.float32),
                                        landmarks_xy=row[4:14].reshape(5, 2).astype(np.float32),
                                        score=float(row[14])))
    return detections


def largest_face(image_bgr: np.ndarray) -> FaceDetection:
    detections = yunet_detections(image_bgr)
    assert detections, "YuNet found no face"
    return max(detections, key=lambda d: float(np.linalg.norm(d.landmarks_xy[1] - d.landmarks_xy[0])))


def aligned_largest_face(image_bgr: np.ndarray) -> np.ndarray:
    return align_face(image_bgr, largest_face(image_bgr).landmarks_xy)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    entry = load_manifest().model("mobilefacenet_128d")
    return FaceEmbedder(entry, resolve_file(entry, [MODEL_DIR]), ["cpu"])


@pytest.fixture(scope="module")
def identity_faces() -> dict[Path, tuple[np.ndarray, FaceDetection]]:
    """Each identity photo with its largest YuNet face, detected once for the module."""
    faces = {}
    for path in IDENTITY_PHOTOS:
        image = cv2.imread(str(path))
        faces[path] = (image, largest_face(image))
    return faces


# --- YuNet landmark order -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", IDENTITY_PHOTOS, ids=[p.stem for p in IDENTITY_PHOTOS])
def test_yunet_landmarks_in_image_order(identity_faces, path):
    left_eye, right_eye, nose, left_mouth, right_mouth = identity_faces[path][1].landmarks_xy
    assert left_eye[0] < right_eye[0]
    assert left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1]
    assert nose[1] < min(left_mouth[1], right_mouth[1])


# --- alignment ------------------------------------------------------------------------------------------------

def test_similarity_recovers_known_transform():
    angle, scale, shift = math.radians(25), 2.7, np.array([310.0, 140.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    source = ARCFACE_TEMPLATE_112 @ (scale * rotation).T + shift
    matrix = similarity_transform(source, ARCFACE_TEMPLATE_112)
    mapped = source @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(mapped, ARCFACE_TEMPLATE_112, atol=1e-9)
    assert math.isclose(np.linalg.norm(matrix[:, 0]), 1 / scale, rel_tol=1e-9)


def test_similarity_never_mirrors():
    mirrored = ARCFACE_TEMPLATE_112 * np.array([-1.0, 1.0])
    matrix = similarity_transform(mirrored, ARCFACE_TEMPLATE_112)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_align_puts_dots_on_template():
    # Five white dots drawn where a rotated, enlarged face would have its landmarks must land on the template.
    angle, scale, shift = math.radians(-18), 3.1, np.array([150.0, 90.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE_112 @ (scale * rotation).T + shift
    image = np.zeros((600, 600, 3), dtype=np.uint8)
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), 6, (255, 255, 255), -1)

    aligned = align_face(image, landmarks)
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    count, _, _, centroids = cv2.connectedComponentsWithStats((grey > 64).astype(np.uint8))
    found = centroids[1:]
    assert count - 1 == 5
    nearest = np.linalg.norm(found[:, None, :] - ARCFACE_TEMPLATE_112[None], axis=2).min(axis=0)
    assert nearest.max() < 0.5


def test_align_output_shape_and_type(identity_faces):
    image, detection = identity_faces[IDENTITY_PHOTOS[0]]
    aligned = align_face(image, detection.landmarks_xy)
    assert aligned.shape == (112, 112, 3)
    assert aligned.dtype == np.uint8


BAD_LANDMARKS = [
    ("four points", np.zeros((4, 2))),
    ("flat array", np.zeros(10)),
    ("not finite", np.where(np.eye(5, 2) > 0, np.nan, 50.0)),
    ("one point", np.full((5, 2), 50.0)),
]


@pytest.mark.parametrize(("case", "landmarks"), BAD_LANDMARKS, ids=[case for case, _ in BAD_LANDMARKS])
def test_align_rejects_bad_landmarks(case, landmarks):
    with pytest.raises(AlignmentError):
        align_face(np.zeros((100, 100, 3), dtype=np.uint8), landmarks)


def test_align_rejects_grey_image():
    with pytest.raises(AlignmentError, match=r"received shape \(100, 100\)"):
        align_face(np.zeros((100, 100), dtype=np.uint8), ARCFACE_TEMPLATE_112)


# --- embedder -------------------------------------------------------------------------------------------------

def test_embedder_dimension_and_model_id(embedder):
    assert embedder.dimension == 128
    assert embedder.model_id == "mobilefacenet_128d:0c9ad2a83969"


def test_embeddings_unit_length_float32(embedder, identity_faces):
    faces = [align_face(image, d.landmarks_xy) for image, d in identity_faces.values()]
    embeddings = embedder.embed(faces)
    assert embeddings.shape == (len(faces), 128)
    assert embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_batches_match_single_faces(embedder, identity_faces):
    faces = [align_face(image, d.landmarks_xy) for image, d in identity_faces.values()]
    one_at_a_time = np.concatenate([embedder.embed([face]) for face in faces])
    # 13 faces in batches of 16 and of 4: both the single-batch and the split path, with a short last batch.
    entry = load_manifest().model("mobilefacenet_128d")
    small_batches = FaceEmbedder(entry, resolve_file(entry, [MODEL_DIR]), ["cpu"], batch_size=4)
    assert embedder.batch_size == 16
    assert np.allclose(embedder.embed(faces), one_at_a_time, atol=1e-5)
    assert np.allclose(small_batches.embed(faces), one_at_a_time, atol=1e-5)


def test_embed_empty_list(embedder):
    embeddings = embedder.embed([])
    assert embeddings.shape == (0, 128)
    assert embeddings.dtype == np.float32


def test_embed_rejects_unaligned_crop(embedder):
    with pytest.raises(FaceEmbedderError, match=r"received shape \(120, 100, 3\)"):
        embedder.embed([np.zeros((120, 100, 3), dtype=np.uint8)])


def test_embedder_rejects_yunet_family():
    entry = load_manifest().model("yunet_s_640")
    with pytest.raises(FaceEmbedderError, match="family 'yunet'"):
        FaceEmbedder(entry, resolve_file(entry, [MODEL_DIR]), ["cpu"])


def test_embedder_rejects_zero_batch_size():
    entry = load_manifest().model("mobilefacenet_128d")
    with pytest.raises(FaceEmbedderError, match="received 0"):
        FaceEmbedder(entry, resolve_file(entry, [MODEL_DIR]), ["cpu"], batch_size=0)


def write_512d_model(path: Path, symbolic_output: bool) -> None:
    """Write a small ArcFace-shaped graph, [batch,3,112,112] in and [batch,512] out, like InsightFace's models."""
    weights = np.random.default_rng(7).standard_normal((3, 512)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weights"], ["683"]),
    ]
    output_size = "embedding_size" if symbolic_output else 512
    graph = helper.make_graph(
        nodes, "arcface_512_stand_in",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", output_size])],
        [helper.make_tensor("weights", TensorProto.FLOAT, weights.shape, weights.flatten())],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


@pytest.mark.parametrize("symbolic_output", [False, True], ids=["fixed", "symbolic"])
def test_512d_insightface_shaped_model(tmp_path, identity_faces, symbolic_output):
    model_path = tmp_path / "arcface_512.onnx"
    write_512d_model(model_path, symbolic_output)
    entry = load_manifest().model("mobilefacenet_128d").model_copy(
        update={"name": "arcface_512", "mean": (127.5, 127.5, 127.5), "std": (127.5, 127.5, 127.5)})
    embedder = FaceEmbedder(entry, model_path, ["cpu"])
    faces = [align_face(image, d.landmarks_xy) for image, d in list(identity_faces.values())[:3]]
    embeddings = embedder.embed(faces)
    assert embedder.dimension == 512
    assert embeddings.shape == (3, 512)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


# --- identities -------------------------------------------------------------------------------------------------

def pair_similarities(embedder, identity_faces) -> tuple[list[float], list[float]]:
    faces = [align_face(image, d.landmarks_xy) for image, d in identity_faces.values()]
    names = [path.parent.name for path in identity_faces]
    embeddings = embedder.embed(faces)
    same, different = [], []
    for i, j in itertools.combinations(range(len(names)), 2):
        (same if names[i] == names[j] else different).append(float(embeddings[i] @ embeddings[j]))
    return same, different


def test_identities_separate_with_margin(embedder, identity_faces):
    same, different = pair_similarities(embedder, identity_faces)
    assert len(same) == 12
    assert len(different) == 66
    # Measured with yunet_s_640 landmarks: min same 0.58, max different 0.20.
    assert min(same) > 0.5
    assert max(different) < 0.3


# --- channel order --------------------------------------------------------------------------------------------

# Colour photos, on which swapping red and blue moves the embedding well past the tolerances below (cosine 0.90
# to 0.93). On the near-grey kit_harington photos a swap keeps the cosine above 0.98, so they cannot catch one.
CHANNEL_PHOTOS = [FACES / "obama" / "obama_1.jpg", FACES / "biden" / "biden_2.jpg",
                  FACES / "alex_lacamoire" / "alex_lacamoire_1.jpg"]


def load_with_pillow(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])


def round_trip_h264(image_bgr: np.ndarray, path: Path) -> np.ndarray:
    """Encode the picture as a short H.264 clip (libx264, crf 12, yuv420p) and return the last decoded frame."""
    height, width = (image_bgr.shape[0] // 2) * 2, (image_bgr.shape[1] // 2) * 2  # yuv420p needs even sizes
    picture = np.ascontiguousarray(image_bgr[:height, :width])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 10)
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="bgr24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(frames) == 3
    return frames[-1]


@pytest.mark.parametrize("path", CHANNEL_PHOTOS, ids=[p.stem for p in CHANNEL_PHOTOS])
def test_pillow_load_same_embedding(embedder, path):
    from_opencv = embedder.embed([aligned_largest_face(cv2.imread(str(path)))])[0]
    from_pillow = embedder.embed([aligned_largest_face(load_with_pillow(path))])[0]
    assert cosine(from_opencv, from_pillow) >= 0.999


@pytest.mark.parametrize("path", CHANNEL_PHOTOS, ids=[p.stem for p in CHANNEL_PHOTOS])
def test_h264_frame_same_embedding(embedder, tmp_path, path):
    image = cv2.imread(str(path))
    # Both crops use the landmarks found in the OpenCV image, so only decoding differs. Detecting again on the
    # frame moves YuNet's landmarks by up to 4 px, which alone lowers the cosine to 0.97 on alex_lacamoire_2.
    landmarks = largest_face(image).landmarks_xy
    from_opencv = embedder.embed([align_face(image, landmarks)])[0]
    from_video = embedder.embed([align_face(round_trip_h264(image, tmp_path / "clip.mp4"), landmarks)])[0]
    assert cosine(from_opencv, from_video) >= 0.98


@pytest.mark.parametrize("path", CHANNEL_PHOTOS, ids=[p.stem for p in CHANNEL_PHOTOS])
def test_swapped_channels_change_embedding(embedder, path):
    # Guards the two tests above: a red-blue swap must move the embedding past their tolerances.
    face = aligned_largest_face(cv2.imread(str(path)))
    swapped = np.ascontiguousarray(face[..., ::-1])
    assert cosine(embedder.embed([face])[0], embedder.embed([swapped])[0]) < 0.98
