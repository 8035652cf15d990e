"""Where the web service keeps its data: data_dir, else EDGE_DATA_DIR as the systemd unit sets it, else web-data."""

from __future__ import annotations

import pytest

from edge.config.web import WebConfig


@pytest.mark.parametrize(("data_dir", "environment", "expected"), [
    (None, None, "etc/web-data"),
    (None, "var/lib/edge-web", "var/lib/edge-web"),
    ("hits", "var/lib/edge-web", "etc/hits"),
])
def test_data_folder_chosen(tmp_path, monkeypatch, data_dir, environment, expected):
    if environment is None:
        monkeypatch.delenv("EDGE_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("EDGE_DATA_DIR", str(tmp_path / environment))
    config = WebConfig(data_dir=data_dir) if data_dir else WebConfig()

    assert config.data_path(tmp_path / "etc") == (tmp_path / expected).resolve()
