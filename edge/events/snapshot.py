"""JPEG snapshots attached to feed messages."""

from __future__ import annotations

import cv2
import numpy as np


class SnapshotError(Exception):
    """An image could not be encoded."""


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SnapshotError(f"JPEG encoding failed for an image of shape {image_bgr.shape}")
    return encoded.tobytes()
