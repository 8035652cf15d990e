"""`edge bench plates` as an accuracy gate: the labelled photos must keep reading exactly."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import ASSETS, edge_command

PLATES = ASSETS / "images" / "plates"


@pytest.mark.parametrize(("folder", "extra"), [("ccpd", []), ("misc", []), ("crops", ["--crops"])])
def test_bench_reads_every_labelled_plate(folder, extra):
    result = subprocess.run([*edge_command(), "bench", "plates", "--images", str(PLATES / folder), "--labels",
                             str(PLATES / folder / "labels.csv"), "--json", *extra],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["exact_plate_rate"] == 1.0, [d for d in report["images_detail"] if not d["exact"]]
    assert report["character_accuracy"] == 1.0
    assert report["province_accuracy"] == 1.0
    assert report["invalid_read_rate"] == 0.0
    assert report["ms_per_plate"] > 0


def test_bench_missing_label_column(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("image,text\na.jpg,苏A12345\n", encoding="utf-8")
    result = subprocess.run([*edge_command(), "bench", "plates", "--images", str(tmp_path), "--labels", str(labels)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "has no column file, plate" in result.stderr


@pytest.mark.parametrize(("labels_bytes", "extra", "expected"), [
    (b"file,plate\n", [], "has a header but no rows"),
    (b"file,plate\n\xb6\xa9.jpg,x\n", [], "is not UTF-8"),
    (b"file,plate\na.jpg,x\n", ["--recognizer", "yolox_nano_416"], "plate recognition supports"),
    (b"file,plate\na.jpg,x\n", ["--detector", "yunet_s_640"], "plate detection supports"),
], ids=["header-only", "gbk", "recognizer-family", "detector-family"])
def test_bench_bad_input_explained(tmp_path, labels_bytes, extra, expected):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(labels_bytes)
    result = subprocess.run([*edge_command(), "bench", "plates", "--images", str(tmp_path), "--labels", str(labels),
                             *extra], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_images_not_a_folder(tmp_path):
    result = subprocess.run([*edge_command(), "bench", "plates", "--images", str(tmp_path / "nowhere"), "--labels",
                             str(PLATES / "misc" / "labels.csv")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "folder not found" in result.stderr
