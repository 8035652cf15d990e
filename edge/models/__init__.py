"""Model and media manifest: what exists, where it comes from, and where it is on this box."""

from edge.models.manifest import (
    AssetError,
    ManifestEntry,
    ModelEntry,
    load_manifest,
    media_dirs,
    model_dirs,
    resolve_file,
    verify_file,
)

__all__ = [
    "AssetError",
    "ManifestEntry",
    "ModelEntry",
    "load_manifest",
    "media_dirs",
    "model_dirs",
    "resolve_file",
    "verify_file",
]
