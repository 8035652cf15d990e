"""Where Numba's kernel cache goes when the package folder and the home folder are read-only."""

from __future__ import annotations

import os
from pathlib import Path

from edge import choose_numba_cache_dir


def only_writable(*writable: Path):
    """Return an os.access replacement under which only the `writable` paths can be written."""
    allowed = {str(path) for path in writable}

    def access(path, mode) -> bool:
        return mode != os.W_OK or str(path) in allowed

    return access


def test_writable_package_keeps_numba_default(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", only_writable(tmp_path / "edge"))
    assert choose_numba_cache_dir(tmp_path / "edge", tmp_path / "home", None) is None


def test_writable_home_keeps_numba_default(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", only_writable(tmp_path / "home"))
    assert choose_numba_cache_dir(tmp_path / "edge", tmp_path / "home", None) is None


def test_data_dir_used_without_writable_home(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", only_writable(tmp_path / "data"))
    chosen = choose_numba_cache_dir(tmp_path / "edge", Path("/nonexistent"), str(tmp_path / "data"))
    assert chosen == tmp_path / "data" / "numba-cache"


def test_private_temporary_folder_last(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", only_writable())
    chosen = choose_numba_cache_dir(tmp_path / "edge", Path("/nonexistent"), None)
    assert chosen is not None and chosen.is_dir()
    assert chosen.stat().st_mode & 0o077 == 0  # readable by this user only
    chosen.rmdir()
