"""`edge bench faces` on the test identity photos, through its command function, main() and a subprocess.

`python -m edge bench faces` reaches this bench only once edge/plates/bench.py calls add_bench_faces_parser, so
these tests call the module directly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.faces.bench import add_bench_faces_parser, cmd_bench_faces, main
from tests.faces.test_align_embed import FACES, IDENTITIES


@pytest.fixture(scope="module")
def identities_dir(tmp_path_factory) -> Path:
    """The five identity folders only, because the faces folder of the test assets also contains distractors and
    group photos."""
    folder = tmp_path_factory.mktemp("identities")
    for name in IDENTITIES:
        (folder / name).symlink_to(FACES / name, target_is_directory=True)
    return folder


def bench_args(**overrides) -> argparse.Namespace:
    values = {"detector": "yunet_s_640", "embedder": "mobilefacenet_128d", "providers": ["cpu"], "json": True}
    return argparse.Namespace(**{**values, **overrides})


@pytest.fixture(scope="module")
def report(identities_dir) -> dict:
    # capsys is function-scoped, so this module-scoped fixture runs main() in a subprocess.
    result = subprocess.run([sys.executable, "-m", "edge.faces.bench", "faces", "--identities", str(identities_dir),
                             "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


COUNTS = [("identities", 5), ("images", 13), ("faces", 13), ("images_without_face", 0), ("quality_failures", 0)]


@pytest.mark.parametrize(("key", "expected"), COUNTS, ids=[key for key, _ in COUNTS])
def test_bench_counts(report, key, expected):
    assert report[key] == expected


def test_bench_pair_counts(report):
    assert report["same_person"]["pairs"] == 12
    assert report["different_person"]["pairs"] == 66


def test_bench_separates_identities(report):
    assert report["same_person"]["min"] > report["different_person"]["max"]
    assert report["tar_at_zero_far"] == 1.0


def test_bench_threshold_above_different(report):
    threshold = report["threshold_at_zero_far"]
    assert threshold > report["different_person"]["max"]
    # Both numbers are rounded to 4 decimals, so the threshold may sit up to two steps above the rounded maximum.
    assert threshold <= report["different_person"]["max"] + 2e-4


def test_bench_distribution_ordered(report):
    for group in ("same_person", "different_person"):
        summary = report[group]
        assert summary["min"] <= summary["median"] <= summary["max"], group


def test_bench_reports_timings(report):
    assert report["ms_per_face"] > 0
    assert report["detect_ms_per_image"] > 0


def test_bench_names_models(report):
    assert report["detector"] == "yunet_s_640"
    assert report["embedder"] == "mobilefacenet_128d:0c9ad2a83969"


@pytest.fixture(scope="module")
def two_people_dir(tmp_path_factory) -> Path:
    """Obama (4 photos) and Biden (2 photos), enough for every statistic with 6 of the 13 photos."""
    folder = tmp_path_factory.mktemp("two_people")
    for name in ("obama", "biden"):
        (folder / name).symlink_to(FACES / name, target_is_directory=True)
    return folder


def test_command_function_text_output(two_people_dir, capsys):
    code = cmd_bench_faces(bench_args(identities=two_people_dir, json=False))
    out = capsys.readouterr().out
    assert code == 0
    assert "same_person            pairs 7" in out
    assert "different_person       pairs 8" in out
    assert "tar_at_zero_far        1.0" in out


def test_main_json_output(two_people_dir, capsys):
    code = main(["faces", "--identities", str(two_people_dir), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert len(report["images_detail"]) == 6


def test_parser_joins_bench_group():
    # The same shape as edge/plates/bench.py's add_bench_parser: `bench` with a `bench_command` sub-group.
    parser = argparse.ArgumentParser(prog="edge")
    bench = parser.add_subparsers(dest="command").add_parser("bench")
    add_bench_faces_parser(bench.add_subparsers(dest="bench_command", required=True))
    args = parser.parse_args(["bench", "faces", "--identities", "photos", "--providers", "cuda", "cpu"])
    assert args.handler is cmd_bench_faces
    assert args.identities == Path("photos")
    assert args.providers == ["cuda", "cpu"]
    assert (args.detector, args.embedder, args.json) == ("yunet_s_640", "mobilefacenet_128d", False)


FAILURES = [
    ("embedder as detector", {"detector": "mobilefacenet_128d"}, "has family 'arcface', but face detection supports only"),
    ("yunet as embedder", {"embedder": "yunet_s_640"}, "face embedding supports only arcface"),
    ("unknown model", {"embedder": "no_such_model"}, "'no_such_model' is not in"),
    ("missing folder", {"identities": Path("/nonexistent/photos")}, "is not a folder"),
]


@pytest.mark.parametrize(("case", "overrides", "message"), FAILURES, ids=[case for case, _, _ in FAILURES])
def test_bench_failure_messages(identities_dir, capsys, case, overrides, message):
    code = cmd_bench_faces(bench_args(**{"identities": identities_dir, **overrides}))
    assert code == 2
    assert message in capsys.readouterr().err


def test_bench_needs_two_people(tmp_path, capsys):
    (tmp_path / "obama").symlink_to(FACES / "obama", target_is_directory=True)
    code = cmd_bench_faces(bench_args(identities=tmp_path))
    assert code == 2
    assert "0 different-person pairs" in capsys.readouterr().err


def test_bench_rejects_unreadable_photo(tmp_path, capsys):
    # Folders are read in name order, so the broken photo comes first and the bench stops before any detection.
    (tmp_path / "aaron").mkdir()
    (tmp_path / "aaron" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "obama").symlink_to(FACES / "obama", target_is_directory=True)
    code = cmd_bench_faces(bench_args(identities=tmp_path))
    assert code == 2
    assert "broken.jpg as an image" in capsys.readouterr().err
