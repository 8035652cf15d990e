"""Download manifest entries and check their sha256 before they replace anything on disk."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

from edge.models.manifest import AssetError, ManifestEntry

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


def fetch(
    entry: ManifestEntry,
    target_dir: Path,
    timeout_s: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download `entry` into `<target_dir>/<task>/<file>`; the file appears only once its sha256 matches."""
    if not entry.url:
        raise AssetError(
            f"'{entry.name}' has no download address in the manifest ({entry.licence}); "
            f"copy {entry.file} into a model folder by hand"
        )
    destination = target_dir / entry.task / entry.file
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, partial_name = tempfile.mkstemp(prefix=f".{entry.file}.", dir=destination.parent)
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(entry.url, timeout=timeout_s) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            while block := response.read(CHUNK_BYTES):
                out.write(block)
                digest.update(block)
                received += len(block)
                if progress is not None:
                    progress(received, total)
        if digest.hexdigest() != entry.sha256:
            if total is not None and received < total:
                raise AssetError(f"download of '{entry.name}' ended after {received} of {total} bytes; "
                                 "nothing was written: run the fetch again")
            raise AssetError(
                f"download of '{entry.name}' has sha256 {digest.hexdigest()}, expected {entry.sha256}; "
                f"the file at {entry.url} has changed: nothing was written"
            )
        # mkstemp creates the file readable by its owner only; the daemon may run as another user.
        partial.chmod(0o644)
        partial.replace(destination)
    except OSError as error:
        raise AssetError(f"download of '{entry.name}' from {entry.url} failed: {error}") from error
    finally:
        partial.unlink(missing_ok=True)
    return destination
