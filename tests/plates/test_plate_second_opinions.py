"""Checks that back up the recogniser: colour from pixels, grown crops, row gap and province stability."""

from __future__ import annotations

import numpy as np
import pytest

from edge.plates.colour import estimate_plate_colour
from edge.plates.grammar import check_plate
from edge.plates.recognizer import PlateRead
from edge.plates.rectify import EXPECTED_ROW_GAP, find_row_gap, grow_corners, warp_plate
from edge.plates.stage import better_read, check_province_stable, check_read
from tests.support import render_plate

needs_font = pytest.mark.skipif(not render_plate.font_available(), reason=render_plate.FONT_MISSING_REASON)


@needs_font
@pytest.mark.parametrize(("text", "style", "colour"), [
    ("京A12345", "blue", "blue"),
    ("鲁B12345", "yellow", "yellow"),
    ("苏AD12345", "green", "green"),
    ("粤A12345D", "yellow_green", "green"),
    ("鄂A1234警", "white", "white"),
    ("使123456", "black", "black"),
])
def test_colour_estimated_from_pixels(text, style, colour):
    estimate = estimate_plate_colour(render_plate.render_plate(text, style))
    assert estimate is not None
    assert estimate.colour == colour


def test_colour_none_without_dominant_class():
    # Four stripes of equal width, each below MIN_BACKGROUND_SHARE after the edges are trimmed.
    stripes = np.zeros((40, 160, 3), dtype=np.uint8)
    stripes[:, 0:40] = (200, 80, 30)  # blue
    stripes[:, 40:80] = (40, 200, 245)  # yellow
    stripes[:, 80:120] = (240, 240, 240)  # white
    stripes[:, 120:160] = (10, 10, 10)  # black
    assert estimate_plate_colour(stripes) is None


@needs_font
def test_colour_head_overruled_only_when_pixels_fit_text():
    embassy = render_plate.render_plate("使418529", "black")
    read = PlateRead("使418529", (1.0,) * 7, "blue", 0.67)

    fixed, check = check_read(read, embassy)
    assert check.valid
    assert fixed.colour == "black"
    assert fixed.colour_from_pixels

    blue = render_plate.render_plate("京A12345", "blue")
    unchanged, check = check_read(read, blue)
    assert not check.valid
    assert unchanged.colour == "blue"
    assert not unchanged.colour_from_pixels


def test_grow_corners_along_plate_axes():
    corners = np.array([[10, 20], [110, 20], [110, 60], [10, 60]], dtype=np.float32)
    grown = grow_corners(corners, 0.1, 0.25)
    np.testing.assert_allclose(grown, [[0, 10], [120, 10], [120, 70], [0, 70]])


@needs_font
def test_row_gap_follows_shifted_corners():
    plate = render_plate.render_plate("豫EH4T8D", "yellow", double_row=True)
    height, width = plate.shape[:2]
    exact = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    shifted = exact + np.array([0, 0.08 * height], dtype=np.float32)
    padded = np.vstack([plate, np.full((height // 4, width, 3), 90, dtype=np.uint8)])

    gap_exact = find_row_gap(warp_plate(padded, exact))
    gap_shifted = find_row_gap(warp_plate(padded, shifted))
    assert gap_exact is not None and gap_shifted is not None
    assert abs(gap_exact - EXPECTED_ROW_GAP) < 0.05
    assert gap_shifted < gap_exact - 0.05


def test_province_confirmed_by_one_other_crop():
    check = check_plate("蒙WZ8K2V", None, "blue")
    assert check_province_stable(check, ["京WZ8K2V", "蒙WZ8K2V"]).valid


def test_province_contradicted_by_every_other_crop():
    check = check_plate("京WZ8K2V", None, "blue")
    unstable = check_province_stable(check, ["蒙Z8K2V", "蒙WZ8K2V"])
    assert not unstable.valid
    assert unstable.plate_type is None
    assert "'京' at position 1 is not stable" in unstable.reason


def test_province_kept_when_other_crops_lost_it():
    check = check_plate("京WZ8K2V", None, "blue")
    assert check_province_stable(check, ["WZ8K2V", ""]).valid


def test_hesitant_second_read_keeps_valid_first():
    first_read = PlateRead("浙QF0R4B", (1.0, 0.44, 1.0, 1.0, 1.0, 1.0, 1.0), "blue", 0.8)
    second_read = PlateRead("浙PF0R4B", (1.0, 0.81, 1.0, 1.0, 1.0, 1.0, 1.0), "blue", 0.8)
    first_check, second_check = check_plate(first_read.text, None, "blue"), check_plate(second_read.text, None, "blue")
    assert not better_read(second_read, second_check, first_read, first_check)


def test_valid_second_read_replaces_invalid_first():
    first_read = PlateRead("川E2T6D", (1.0,) * 6, "blue", 0.9)
    second_read = PlateRead("川EH2T6D", (1.0, 1.0, 0.85, 1.0, 1.0, 1.0, 1.0), "blue", 0.9)
    first_check, second_check = check_plate(first_read.text, None, "blue"), check_plate(second_read.text, None, "blue")
    assert better_read(second_read, second_check, first_read, first_check)
