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
    (b"file,plate\na.jpg,\xe8\x8b\x8fA12345\n", ["--recognizer", "yolox_nano_416"], "plate recognition supports"),
    (b"file,plate\na.jpg,\xe8\x8b\x8fA12345\n", ["--detector", "yunet_s_640"], "plate detection supports"),
], ids=["header-only", "gbk", "recognizer-family", "detector-family"])
def test_bench_bad_input_explained(tmp_path, labels_bytes, extra, expected):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(labels_bytes)
    (tmp_path / "a.jpg").write_bytes(b"not read: the model check fails first")
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


def test_bench_reports_every_bad_row(tmp_path):
    """Short rows, empty labels, repeated files and missing images are all listed, each with its line."""
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (tmp_path / name).write_bytes(b"x")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,plate,plate_color\n"
                      "a.jpg,苏A12345,blue\n"
                      "b.jpg\n"
                      "c.jpg,,blue\n"
                      "a.jpg,苏A54321,blue\n"
                      "gone.jpg,苏A11111,blue\n"
                      "c.jpg, ; ,blue\n"
                      "d.jpg,NOTAPLATE,blue\n"
                      "d.jpg,苏AO1234,blue\n", encoding="utf-8")
    result = subprocess.run([*edge_command(), "bench", "plates", "--images", str(tmp_path), "--labels", str(labels)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "7 invalid row(s)" in result.stderr
    assert f"{labels}:3: too few columns" in result.stderr
    assert f"{labels}:4: empty plate label for c.jpg" in result.stderr
    assert f"{labels}:5: a.jpg is already labelled on line 2" in result.stderr
    assert f"{labels}:6: image gone.jpg not found in {tmp_path}" in result.stderr
    assert f"{labels}:7: empty plate label for c.jpg" in result.stderr
    assert f"{labels}:8: label 'NOTAPLATE' for d.jpg is not a mainland plate" in result.stderr
    assert f"{labels}:9: label '苏AO1234' for d.jpg is published as '苏A01234'" in result.stderr
    # The images are checked before OpenCV opens any of them, so it prints no warning of its own.
    assert "WARN" not in result.stderr


@pytest.mark.parametrize(("make_labels", "expected"), [
    (lambda folder: folder / "nonexistent.csv", "file not found"),
    (lambda folder: folder, "is a directory"),
], ids=["missing", "directory"])
def test_bench_labels_path_explained(tmp_path, make_labels, expected):
    labels = make_labels(tmp_path)
    result = subprocess.run([*edge_command(), "bench", "plates", "--images", str(tmp_path), "--labels", str(labels)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"--labels {labels}" in result.stderr
    assert expected in result.stderr
    assert "Errno" not in result.stderr


def test_bench_unreadable_image_names_line(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not an image")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,plate\na.jpg,苏A12345\n", encoding="utf-8")
    result = subprocess.run([*edge_command(), "bench", "plates", "--images", str(tmp_path), "--labels", str(labels)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{labels}:2: cannot read {tmp_path / 'a.jpg'} as an image" in result.stderr


def test_bench_plates_help_has_description():
    result = subprocess.run([*edge_command(), "bench", "plates", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert "Read the plates in every image listed in the labels CSV" in result.stdout


def test_bench_suggests_crops_for_crop_images():
    labels = PLATES / "crops" / "labels.csv"
    without = subprocess.run([*edge_command(), "bench", "plates", "--images", str(PLATES / "crops"), "--labels",
                              str(labels)], capture_output=True, text=True, timeout=300)
    with_crops = subprocess.run([*edge_command(), "bench", "plates", "--images", str(PLATES / "crops"), "--labels",
                                 str(labels), "--crops"], capture_output=True, text=True, timeout=300)
    assert without.returncode == 0, without.stderr
    assert "run again with --crops" in without.stderr
    assert "no plate was detected" in without.stderr
    assert with_crops.returncode == 0, with_crops.stderr
    assert "--crops" not in with_crops.stderr
