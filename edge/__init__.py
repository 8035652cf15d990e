"""Video-analytics appliance for GPU edge boxes at street-camera hubs."""

import os
import tempfile
from pathlib import Path

__version__ = "0.1.0"


def choose_numba_cache_dir(package_dir: Path, home: Path, data_dir: str | None) -> Path | None:
    """Return a folder for Numba's compiled-kernel cache, or None where Numba finds a writable one itself.

    Numba caches next to the source or under the home folder, and every command fails at import when it can
    write neither, as for a service user without a home. The data folder comes next, then a new private
    temporary folder: a shared, predictable one could be filled with cache files by another user.
    """
    if os.access(package_dir, os.W_OK) or os.access(home / ".cache", os.W_OK) or os.access(home, os.W_OK):
        return None
    if data_dir and os.access(data_dir, os.W_OK):
        return Path(data_dir) / "numba-cache"
    return Path(tempfile.mkdtemp(prefix="edge-numba-cache-"))


# This runs before any module imports Numba, which reads NUMBA_CACHE_DIR once at its import.
if "NUMBA_CACHE_DIR" not in os.environ:
    _cache_dir = choose_numba_cache_dir(Path(__file__).parent, Path(os.path.expanduser("~")),
                                        os.environ.get("EDGE_DATA_DIR"))
    if _cache_dir is not None:
        os.environ["NUMBA_CACHE_DIR"] = str(_cache_dir)
