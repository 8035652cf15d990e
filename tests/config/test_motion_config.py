"""Validation of the motion gating fields of a camera: bounds, ignore-zone polygons, keep-alive vs max_fps."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, load_site
from tests.conftest import PEOPLE_CLIP

CAMERA = f"""
[[cameras]]
id = "cam-1"
name = "Gate"
source = "{PEOPLE_CLIP}"
"""


def load_camera(tmp_path: Path, lines: str):
    path = tmp_path / "site.toml"
    path.write_text(CAMERA + lines + "\n", encoding="utf-8")
    return load_site(path).cameras[0]


def config_errors(tmp_path: Path, lines: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_camera(tmp_path, lines)
    return [str(issue) for issue in caught.value.issues]


def test_gating_is_off_by_default(tmp_path):
    camera = load_camera(tmp_path, "")
    assert camera.motion_gating is False
    assert camera.ignore_zones == []
    assert 0 < camera.motion_threshold < 1
    assert camera.keepalive_interval_s > 1 / camera.max_fps


def test_valid_gating_fields_load(tmp_path):
    camera = load_camera(tmp_path, "motion_gating = true\nmotion_threshold = 0.01\nkeepalive_interval_s = 30\n"
                                   "ignore_zones = [[[0.7, 0], [1, 0], [1, 0.1], [0.7, 0.1]],"
                                   " [[0, 0.5], [0.3, 1], [0, 1]]]")
    assert camera.motion_gating is True
    assert camera.motion_threshold == 0.01
    assert camera.keepalive_interval_s == 30
    assert camera.ignore_zones[1] == [[0.0, 0.5], [0.3, 1.0], [0.0, 1.0]]


INVALID_VALUES = [
    # (field lines, field path, words the message must contain)
    ("motion_threshold = 0", "cameras[0].motion_threshold", "greater than or equal to 0.0001"),
    ("motion_threshold = 0.9", "cameras[0].motion_threshold", "less than or equal to 0.5"),
    ('motion_threshold = "low"', "cameras[0].motion_threshold", "valid number"),
    ("keepalive_interval_s = 0.1", "cameras[0].keepalive_interval_s", "greater than or equal to 0.5"),
    ("keepalive_interval_s = 7200", "cameras[0].keepalive_interval_s", "less than or equal to 3600"),
    ('motion_gating = "on"', "cameras[0].motion_gating", "valid boolean"),
    ("ignore_zones = [[[0, 0], [1, 0]]]", "cameras[0].ignore_zones[0]", "at least 3 items"),
    ("ignore_zones = [[[0, 0], [1.5, 0], [1, 1]]]", "cameras[0].ignore_zones[0][1][0]", "less than or equal to 1"),
    ("ignore_zones = [[[0, -0.1], [1, 0], [1, 1]]]", "cameras[0].ignore_zones[0][0][1]",
     "greater than or equal to 0"),
    ("ignore_zones = [[[0, 0, 0], [1, 0], [1, 1]]]", "cameras[0].ignore_zones[0][0]", "at most 2 items"),
    ("ignore_zones = [[[0, 0], [0.5, 0.5], [1, 1]]]", "cameras[0].ignore_zones", "zones with no area: 0 ("),
    ("ignore_zones = [[[0, 0], [1, 0], [1, 1]], [[0.2, 0.2], [0.2, 0.2], [0.2, 0.2]]]", "cameras[0].ignore_zones",
     "zones with no area: 1 ("),
    # Every flat zone is named in one run.
    ("ignore_zones = [[[0, 0], [0.5, 0.5], [1, 1]], [[0, 0], [1, 0], [1, 1]], [[0.2, 0.2], [0.2, 0.2], [0.2, 0.2]]]",
     "cameras[0].ignore_zones", "zones with no area: 0, 2 ("),
    ('ignore_zones = [["top-right"]]', "cameras[0].ignore_zones[0][0]", "valid list"),
    ("ignore_zones = [" + ", ".join(["[[0, 0], [1, 0], [1, 1]]"] * 33) + "]", "cameras[0].ignore_zones",
     "at most 32 items"),
]


@pytest.mark.parametrize(("lines", "field_path", "expected"), INVALID_VALUES)
def test_invalid_gating_value_reported(tmp_path, lines, field_path, expected):
    messages = config_errors(tmp_path, lines)
    location = f"{tmp_path / 'site.toml'}: {field_path}"
    assert any(message.startswith(location) and expected in message for message in messages), messages


def test_keepalive_shorter_than_frame_interval_rejected(tmp_path):
    messages = config_errors(tmp_path, "motion_gating = true\nmax_fps = 1\nkeepalive_interval_s = 0.5")
    assert len(messages) == 1
    assert "keepalive_interval_s (0.5) must be longer than the frame interval 1/max_fps (1 s)" in messages[0]


def test_short_keepalive_allowed_without_gating(tmp_path):
    camera = load_camera(tmp_path, "max_fps = 1\nkeepalive_interval_s = 0.5")
    assert camera.keepalive_interval_s == 0.5
