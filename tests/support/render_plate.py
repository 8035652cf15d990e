"""Render synthetic mainland Chinese licence plates and the degradations that the plate tests apply.

Sizes follow GA 36-2018 in millimetres and are scaled by `px_per_mm`. Single-row plates are
440x140 mm with 45x90 mm characters 12 mm apart. New-energy plates are 480x140 mm with eight
43 mm wide characters. Double-row plates are 440x220 mm with a short top row (province and
authority letter) and a tall bottom row (the serial).

Glyphs come from Noto Sans CJK Bold (Debian package fonts-noto-cjk), because the plate typeface
is not freely available. Each glyph is scaled to the cell height and squeezed to the cell width,
because the plate typeface is condensed and Noto's Chinese glyphs are about square. Rendering runs
at SUPERSAMPLE times the output size and is scaled down with area averaging, which anti-aliases
the edges as a camera does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
FONT_MISSING_REASON = f"{FONT_PATH} not found: apt-get install fonts-noto-cjk"
# Face indices inside the collection. "Noto Sans CJK SC" has the simplified Chinese glyph forms.
# Letters and digits come from "Noto Sans Mono CJK SC", because plate characters sit in cells of
# equal width and the monospaced design draws M and W narrow, as the plate typeface does.
CJK_FACE = 2
LATIN_FACE = 7
FONT_RENDER_SIZE = 256

SUPERSAMPLE = 4
# Sigma in output pixels of the blur that softens the remaining hard edges, as a lens does.
ANTI_ALIAS_SIGMA = 0.5

# Plate styles. The names match the recogniser's colour classes, except "yellow_green". That is the
# two-colour background of large new-energy plates, which the recogniser calls yellow or green.
STYLES = ("blue", "yellow", "green", "yellow_green", "white", "black")

# BGR values. Blue, yellow and green are estimated from the plate backgrounds in photos of real plates.
BLUE = (178, 80, 30)
YELLOW = (40, 200, 245)
GREEN_TOP = (220, 234, 216)
GREEN_BOTTOM = (148, 211, 110)
WHITE = (238, 240, 240)
BLACK = (22, 20, 20)
RED = (36, 30, 200)
BOLT_GREY = (150, 150, 150)

# Background and character colour of each style.
_STYLE_COLOURS = {
    "blue": (BLUE, WHITE),
    "yellow": (YELLOW, BLACK),
    "green": (GREEN_BOTTOM, BLACK),
    "yellow_green": (GREEN_BOTTOM, BLACK),
    "white": (WHITE, BLACK),
    "black": (BLACK, WHITE),
}
# Characters printed red whatever the style, which are the police suffix and the consulate and
# embassy marks. NOTE: red 领 and 使 follow descriptions in secondary sources, not GA 36-2018.
RED_CHARACTERS = "警领使"

# Border line in the character colour, inset from the plate edge (mm).
BORDER_INSET_MM = 3.0
BORDER_WIDTH_MM = 2.0
SEPARATOR_DOT_DIAMETER_MM = 10.0
BOLT_DIAMETER_MM = 8.0
BOLT_TOP_MM = 12.0


@dataclass(frozen=True)
class _Cell:
    """A character cell on the plate, in millimetres from the top-left corner."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class _Layout:
    width: float
    height: float
    cells: tuple[_Cell, ...]
    dot_centre: tuple[float, float] | None  # separator dot (mm), None where the plate has none
    bolt_x: tuple[float, float]  # centres of the two mounting bolts on the top edge (mm)


def _single_row(count: int, plate_width: float, char_width: float, spacing: float, separator_gap: float,
                gap_after: int, dot: bool) -> _Layout:
    """Lay out `count` characters, 90 mm high and centred, on a 140 mm high plate.

    The gap after character number `gap_after` (counted from 1) is `separator_gap` wide and contains
    the separator dot when `dot` is set.
    """
    height, char_height = 140.0, 90.0
    total = count * char_width + (count - 2) * spacing + separator_gap
    x = (plate_width - total) / 2
    y = (height - char_height) / 2
    cells = []
    dot_centre = None
    for index in range(count):
        cells.append(_Cell(x, y, char_width, char_height))
        x += char_width
        if index == gap_after - 1:
            if dot:
                dot_centre = (x + separator_gap / 2, height / 2)
            x += separator_gap
        elif index < count - 1:
            x += spacing
    return _Layout(plate_width, height, tuple(cells), dot_centre, (plate_width * 0.25, plate_width * 0.75))


def _double_row() -> _Layout:
    """Lay out a 440x220 mm plate: 80x60 mm province and letter on top, five 65x110 mm characters below."""
    top = (_Cell(110.0, 15.0, 80.0, 60.0), _Cell(250.0, 15.0, 80.0, 60.0))
    bottom_width, bottom_spacing = 65.0, 15.0
    left = (440.0 - 5 * bottom_width - 4 * bottom_spacing) / 2
    bottom = tuple(_Cell(left + i * (bottom_width + bottom_spacing), 95.0, bottom_width, 110.0) for i in range(5))
    # The bolts sit outside the top row's characters.
    return _Layout(440.0, 220.0, top + bottom, (220.0, 45.0), (80.0, 360.0))


def _layout_for(text: str, double_row: bool) -> _Layout:
    if double_row:
        if len(text) != 7:
            raise ValueError(f"double-row plates have 7 characters, got {len(text)} in {text!r}")
        return _double_row()
    if len(text) == 8:
        # New-energy plates have no separator dot. The new-energy emblem that fills the gap, which is
        # estimated from photos as 42 mm, is not drawn.
        return _single_row(8, 480.0, 43.0, 9.0, 42.0, gap_after=2, dot=False)
    if len(text) != 7:
        raise ValueError(f"single-row plates have 7 or 8 characters, got {len(text)} in {text!r}")
    if text[0] == "使":
        # NOTE: the dot after the three-digit country code follows photos of 2017-layout embassy
        # plates, not the text of the standard.
        return _single_row(7, 440.0, 45.0, 12.0, 34.0, gap_after=4, dot=True)
    if text[-1] == "警":
        # Police plates put the dot after the province, e.g. 鄂·F8888警.
        return _single_row(7, 440.0, 45.0, 12.0, 34.0, gap_after=1, dot=True)
    return _single_row(7, 440.0, 45.0, 12.0, 34.0, gap_after=2, dot=True)


def font_available() -> bool:
    return FONT_PATH.is_file()


@lru_cache(maxsize=2)
def _font(face: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), FONT_RENDER_SIZE, index=face)


@lru_cache(maxsize=256)
def _glyph_mask(character: str) -> np.ndarray:
    """Return the ink of `character` as a float32 mask in [0, 1], cropped to its bounding box."""
    font = _font(LATIN_FACE if character.isascii() else CJK_FACE)
    size = FONT_RENDER_SIZE * 2
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).text((size // 4, size // 4), character, fill=255, font=font)
    ink = np.asarray(image, dtype=np.float32) / 255.0
    rows, cols = np.nonzero(ink > 0.0)
    if len(rows) == 0:
        raise ValueError(f"{FONT_PATH} has no glyph for {character!r}")
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _draw_glyph(mask: np.ndarray, character: str, cell: _Cell, scale: float) -> None:
    """Add the glyph to `mask`, as high as the cell, squeezed to the cell width and centred in it."""
    glyph = _glyph_mask(character)
    cell_width, cell_height = cell.width * scale, cell.height * scale
    glyph_height, glyph_width = glyph.shape
    if character.isascii():
        # Letters and digits are squeezed by the factor that makes "0" fill the cell, so narrow
        # glyphs such as 1 stay narrow.
        reference = _glyph_mask("0")
        relative_width = (glyph_width / glyph_height) / (reference.shape[1] / reference.shape[0])
        width = cell_width * min(1.0, relative_width)
    else:
        width = cell_width
    resized = cv2.resize(glyph, (max(1, round(width)), max(1, round(cell_height))), interpolation=cv2.INTER_AREA)
    left = round(cell.x * scale + (cell_width - resized.shape[1]) / 2)
    top = round(cell.y * scale + (cell_height - resized.shape[0]) / 2)
    region = mask[top:top + resized.shape[0], left:left + resized.shape[1]]
    np.maximum(region, resized[:region.shape[0], :region.shape[1]], out=region)


def _background(style: str, layout: _Layout, scale: float) -> np.ndarray:
    height, width = round(layout.height * scale), round(layout.width * scale)
    colour, _ = _STYLE_COLOURS[style]
    plate = np.empty((height, width, 3), dtype=np.float32)
    plate[:] = colour
    if style == "green":
        # Small new-energy plates fade from near-white at the top to green at the bottom.
        weight = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        plate[:] = (1 - weight) * np.float32(GREEN_TOP) + weight * np.float32(GREEN_BOTTOM)
    elif style == "yellow_green":
        # NOTE: the yellow part behind the province and authority letter and the green part behind
        # the serial are estimated from photos of large new-energy plates.
        split = round((layout.cells[1].x + layout.cells[1].width + 6.0) * scale)
        plate[:, :split] = YELLOW
    return plate


def render_plate(text: str, style: str, double_row: bool = False, px_per_mm: float = 0.5) -> np.ndarray:
    """Render a plate as an upright BGR uint8 image.

    `style` is one of STYLES. Seven characters make a standard single-row plate (440x140 mm), eight
    a new-energy plate (480x140 mm), and `double_row` a 440x220 mm double-row plate. Characters in
    RED_CHARACTERS are printed red. Raises ValueError for an unknown style, a length that fits no
    layout, or a character that the font lacks.
    """
    if style not in STYLES:
        raise ValueError(f"unknown plate style {style!r}; expected one of {', '.join(STYLES)}")
    layout = _layout_for(text, double_row)
    scale = px_per_mm * SUPERSAMPLE
    plate = _background(style, layout, scale)
    _, ink_colour = _STYLE_COLOURS[style]

    # One coverage mask per colour, blended in turn, so anti-aliased edges mix with the background.
    masks = {ink_colour: np.zeros(plate.shape[:2], dtype=np.float32)}
    for character, cell in zip(text, layout.cells):
        colour = RED if character in RED_CHARACTERS else ink_colour
        mask = masks.setdefault(colour, np.zeros(plate.shape[:2], dtype=np.float32))
        _draw_glyph(mask, character, cell, scale)

    lines = masks[ink_colour]
    inset, border = BORDER_INSET_MM * scale, max(1, round(BORDER_WIDTH_MM * scale))
    cv2.rectangle(lines, (round(inset), round(inset)),
                  (round(plate.shape[1] - 1 - inset), round(plate.shape[0] - 1 - inset)), 1.0, border)
    if layout.dot_centre is not None:
        centre = (round(layout.dot_centre[0] * scale), round(layout.dot_centre[1] * scale))
        cv2.circle(lines, centre, round(SEPARATOR_DOT_DIAMETER_MM / 2 * scale), 1.0, -1)
    bolts = masks.setdefault(BOLT_GREY, np.zeros(plate.shape[:2], dtype=np.float32))
    for bolt_x in layout.bolt_x:
        cv2.circle(bolts, (round(bolt_x * scale), round(BOLT_TOP_MM * scale)),
                   round(BOLT_DIAMETER_MM / 2 * scale), 1.0, -1)

    for colour, mask in masks.items():
        weight = mask[:, :, None]
        plate = (1 - weight) * plate + weight * np.float32(colour)

    small = cv2.resize(plate, (round(layout.width * px_per_mm), round(layout.height * px_per_mm)),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), ANTI_ALIAS_SIGMA)
    return np.clip(small + 0.5, 0, 255).astype(np.uint8)


def place_on_background(plate_bgr: np.ndarray, mask: np.ndarray | None = None, size: tuple[int, int] = (800, 600)
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Place the plate on a plain car-front scene, because the plate detector needs context around it.

    The scene is a grey car front: a darker body, a grille above the plate and two headlights. The
    plate is centred horizontally below the grille. `mask` (uint8, 255 inside the plate) limits what
    is copied, for warped plates. `size` is (width, height) and must leave 20 px around the plate.
    Returns the BGR scene and the plate's axis-aligned box as float32 x1, y1, x2, y2.
    """
    width, height = size
    plate_height, plate_width = plate_bgr.shape[:2]
    if plate_width + 40 > width or plate_height + 40 > height:
        raise ValueError(f"a {plate_width}x{plate_height} plate does not fit a {width}x{height} scene with "
                         "20 px margins; pass a larger size")

    scene = np.full((height, width, 3), (150, 148, 146), dtype=np.uint8)
    body_top, body_left, body_right = height // 4, width // 10, width - width // 10
    cv2.rectangle(scene, (body_left, body_top), (body_right, height - height // 12), (92, 90, 88), -1)
    cv2.rectangle(scene, (width // 4, body_top + height // 12), (width - width // 4, height // 2), (45, 45, 45), -1)
    for x in (body_left + width // 20, body_right - width // 20 - width // 8):
        cv2.rectangle(scene, (x, body_top + height // 12), (x + width // 8, body_top + height // 6),
                      (215, 215, 210), -1)

    left = (width - plate_width) // 2
    top = min(height // 2 + height // 16, height - plate_height - 20)
    target = scene[top:top + plate_height, left:left + plate_width]
    if mask is None:
        target[:] = plate_bgr
    else:
        weight = (mask.astype(np.float32) / 255.0)[:, :, None]
        target[:] = (weight * plate_bgr + (1 - weight) * target + 0.5).astype(np.uint8)
    box = np.array([left, top, left + plate_width, top + plate_height], dtype=np.float32)
    return scene, box


def gaussian_blur(image_bgr: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    return cv2.GaussianBlur(image_bgr, (0, 0), sigma)


def jpeg_reencode(image_bgr: np.ndarray, quality: int = 40) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {image_bgr.shape} image as JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def rotate_plate_plane(plate_bgr: np.ndarray, degrees: float = 15.0, distance_widths: float = 1.5
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Turn the plate about its vertical centre line by `degrees` and project it with a pinhole camera.

    The camera looks at the plate centre from `distance_widths` plate widths away, with the focal
    length equal to that distance, so an unturned plate keeps its size. Positive angles move the
    right edge away from the camera. Returns the warped BGR image and a uint8 mask (255 inside the
    plate), both cropped to the projected plate.
    """
    height, width = plate_bgr.shape[:2]
    focal = distance_widths * width
    angle = math.radians(degrees)
    source = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    projected = []
    for x, y in source:
        # Coordinates relative to the plate centre, rotated about the vertical (y) axis.
        centred_x, centred_y = x - width / 2, y - height / 2
        rotated_x, depth = centred_x * math.cos(angle), centred_x * math.sin(angle)
        projected.append((focal * rotated_x / (focal + depth), focal * centred_y / (focal + depth)))
    target = np.array(projected, dtype=np.float32)
    target -= target.min(axis=0)
    out_width, out_height = (np.ceil(target.max(axis=0)).astype(int) + 1).tolist()

    transform = cv2.getPerspectiveTransform(source, target)
    warped = cv2.warpPerspective(plate_bgr, transform, (out_width, out_height), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((height, width), 255, dtype=np.uint8), transform, (out_width, out_height),
                               flags=cv2.INTER_LINEAR)
    return warped, mask
