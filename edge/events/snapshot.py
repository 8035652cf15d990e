"""JPEG snapshots attached to feed messages."""

from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)


class SnapshotError(Exception):
    """An image could not be encoded."""


def encode_jpegs(images_bgr: list[np.ndarray], quality: int) -> list[bytes]:
    """Encode every image, or return [] when one fails, so the message still goes out without images."""
    try:
        return [encode_jpeg(image, quality) for image in images_bgr]
    except (SnapshotError, cv2.error) as error:
        log.error("snapshot dropped from a message: %s", error)
        return []


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SnapshotError(f"JPEG encoding failed for an image of shape {image_bgr.shape}")
    return encoded.tobytes()
