"""Estimate the background colour of a rectified plate from its pixels.

The recogniser's colour head is a small classifier that is unsure on some plates: it returns blue
for black embassy plates with a red 使 and white for the yellow and green halves of large
new-energy plates. This estimate is independent of that head. The stage uses it only as a second
opinion when the head's colour contradicts the plate type that the text implies.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Fraction of the width and height cut from each side before counting, so the frame of the plate
# and the car body around a loose crop do not count.
EDGE_TRIM = 0.08
# Thresholds on OpenCV's HSV scale (H 0..179, S and V 0..255).
BLACK_MAX_VALUE = 80
WHITE_MAX_SATURATION = 50
YELLOW_HUE = (10, 35)
GREEN_HUE = (35, 90)
BLUE_HUE = (90, 135)
# The background must cover at least this share of the counted pixels. The characters cover about
# a third of a plate, so a clear background covers more than half.
MIN_BACKGROUND_SHARE = 0.35


@dataclass(frozen=True)
class ColourEstimate:
    """The most common background class and the share of the counted pixels that it covers."""

    colour: str
    share: float


def estimate_plate_colour(plate_bgr: np.ndarray) -> ColourEstimate | None:
    """Return the plate colour (one of grammar.COLOURS) that covers most of the plate, or None.

    Characters are counted too, but they cover less of a plate than the background. None means
    that no class covers MIN_BACKGROUND_SHARE of the plate, or that the crop is empty.
    """
    height, width = plate_bgr.shape[:2]
    top, left = int(height * EDGE_TRIM), int(width * EDGE_TRIM)
    inner = plate_bgr[top:height - top, left:width - left]
    if inner.size == 0:
        return None

    hsv = cv2.cvtColor(inner, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.int32)
    hue, saturation, value = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    black = value < BLACK_MAX_VALUE
    white = ~black & (saturation < WHITE_MAX_SATURATION)
    chromatic = ~black & ~white
    counts = {
        "black": int(black.sum()),
        "white": int(white.sum()),
        "yellow": int((chromatic & (hue >= YELLOW_HUE[0]) & (hue < YELLOW_HUE[1])).sum()),
        "green": int((chromatic & (hue >= GREEN_HUE[0]) & (hue < GREEN_HUE[1])).sum()),
        "blue": int((chromatic & (hue >= BLUE_HUE[0]) & (hue < BLUE_HUE[1])).sum()),
    }
    colour = max(counts, key=counts.get)
    share = counts[colour] / len(hsv)
    if share < MIN_BACKGROUND_SHARE:
        return None
    return ColourEstimate(colour, share)
