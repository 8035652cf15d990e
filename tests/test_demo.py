"""The demo clip command: `python -m edge.demo OUT_DIR`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_demo(args: list[str], cwd, image_dir) -> subprocess.CompletedProcess:
    # An empty image folder makes a run that gets past the arguments fail fast instead of writing a clip.
    env = {**os.environ, "EDGE_IMAGE_DIR": str(image_dir)}
    return subprocess.run([sys.executable, "-m", "edge.demo", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_help_prints_usage(tmp_path):
    """`--help` was taken for the output folder and got a 3 MB clip written into it."""
    result = run_demo(["--help"], tmp_path, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "usage: python -m edge.demo [-h] OUT_DIR" in result.stdout
    assert "EDGE_IMAGE_DIR" in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "expected"), [
    (["--", "-out"], "OUT_DIR '-out' starts with '-'"),
    (["--verbose", "out"], "unrecognized arguments: --verbose"),
    ([], "the following arguments are required: OUT_DIR"),
    (["a", "b"], "unrecognized arguments: b"),
])
def test_bad_arguments_rejected(tmp_path, args, expected):
    result = run_demo(args, tmp_path, tmp_path)

    assert result.returncode == 2
    assert expected in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_photos_reported(tmp_path):
    result = run_demo([str(tmp_path / "out")], tmp_path, tmp_path / "no-images")

    assert result.returncode == 1
    assert "cannot build the demo clip: demo photos not found" in result.stderr
    assert "set EDGE_IMAGE_DIR" in result.stderr
