"""Warp a face onto the 112x112 ArcFace template by a similarity transform fitted to its 5 landmarks."""

from __future__ import annotations

import cv2
import numpy as np

ALIGNED_SIZE = 112
# The 5-point template of InsightFace's ArcFace models at 112x112, in LANDMARK_NAMES order (image-left eye
# first). MobileFaceNet and InsightFace's embedders expect crops warped onto these points.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],  # left eye
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ],
    dtype=np.float64,
)
# Below this spread (in pixels) the landmarks sit on one point and no scale can be fitted.
MIN_LANDMARK_SPREAD_PX = 1e-3


class AlignmentError(ValueError):
    """The image or the landmarks cannot be aligned."""


def similarity_transform(source_xy: np.ndarray, target_xy: np.ndarray) -> np.ndarray:
    """Fit the 2x3 rotation + uniform scale + translation that maps `source_xy` onto `target_xy`.

    This is Umeyama's closed-form least-squares fit over all points. It is used instead of
    `cv2.estimateAffinePartial2D` because with only 5 points a robust estimator (RANSAC, LMEDS) may treat some
    landmarks as outliers and ignore them, and its result depends on random sampling.
    """
    source_mean = source_xy.mean(axis=0)
    target_mean = target_xy.mean(axis=0)
    source_centred = source_xy - source_mean
    target_centred = target_xy - target_mean
    source_variance = (source_centred ** 2).sum() / len(source_xy)
    if source_variance < MIN_LANDMARK_SPREAD_PX ** 2:
        raise AlignmentError(f"landmarks must be spread apart, received all within {MIN_LANDMARK_SPREAD_PX} px: "
                             f"{source_xy.tolist()}")

    covariance = target_centred.T @ source_centred / len(source_xy)
    u, singular_values, vt = np.linalg.svd(covariance)
    # A reflection would mirror the face, so the weakest axis is flipped to keep a proper rotation.
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = float((singular_values * signs).sum() / source_variance)

    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - scale * rotation @ source_mean
    return matrix


def _check_inputs(image_bgr: np.ndarray, landmarks_xy: np.ndarray) -> np.ndarray:
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise AlignmentError(f"image must be HxWx3 uint8 BGR, received shape {image_bgr.shape} dtype {image_bgr.dtype}")
    landmarks = np.asarray(landmarks_xy, dtype=np.float64)
    if landmarks.shape != ARCFACE_TEMPLATE_112.shape:
        raise AlignmentError(f"landmarks must have shape (5, 2), received {landmarks.shape}")
    if not np.isfinite(landmarks).all():
        raise AlignmentError(f"landmarks must be finite, received {landmarks.tolist()}")
    return landmarks


def align_face(image_bgr: np.ndarray, landmarks_xy: np.ndarray) -> np.ndarray:
    """Return the 112x112x3 uint8 BGR crop whose landmarks best match ARCFACE_TEMPLATE_112.

    Parts of the crop that fall outside the image are black.
    """
    landmarks = _check_inputs(image_bgr, landmarks_xy)
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE_112)
    return cv2.warpAffine(image_bgr, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
