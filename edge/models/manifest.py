"""Read models/manifest.toml and find its files on disk, checking their sha256."""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_PATH = PROJECT_ROOT / "models" / "manifest.toml"


class AssetError(Exception):
    """A model or media file is missing, corrupt or unknown."""


class ManifestEntry(BaseModel):
    """A file the appliance can use, with its origin and checksum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    task: str = Field(description="Sub-folder the file lives in, such as coco, face, plate or videos.")
    file: str
    url: str = Field(description="Download address; empty when the file cannot be downloaded on its own.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    licence: str


class ModelEntry(ManifestEntry):
    """A model, with the input it expects."""

    family: str
    input_size: tuple[int, int] = Field(description="[width, height]; 0 where the model accepts any size.")
    colour_order: Literal["bgr", "rgb"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    letterbox: Literal["top-left", "centre", "none"]
    pad_value: int = Field(ge=0, le=255)
    charset: str | None = Field(
        default=None, description="Recognisers only: the character of each output class; index 0 is the CTC blank."
    )
    colours: tuple[str, ...] | None = Field(
        default=None, description="Models with a colour output: the colour name of each output class."
    )
    match_threshold: float | None = Field(
        default=None, description="Face embedders only: cosine similarity at or above which two faces match."
    )
    threshold_note: str | None = Field(default=None, description="How match_threshold was chosen.")


@dataclass(frozen=True)
class Manifest:
    models: dict[str, ModelEntry]
    media: dict[str, ManifestEntry]

    def model(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise AssetError(f"model '{name}' is not in {MANIFEST_PATH}; known models: {known}") from None

    def entry(self, name: str) -> ManifestEntry:
        if name in self.models:
            return self.models[name]
        if name in self.media:
            return self.media[name]
        known = ", ".join(sorted([*self.models, *self.media]))
        raise AssetError(f"'{name}' is not in {MANIFEST_PATH}; known names: {known}")

    def entries(self) -> list[ManifestEntry]:
        return [*self.models.values(), *self.media.values()]


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    with path.open("rb") as file:
        data = tomllib.load(file)
    models = [ModelEntry.model_validate(item) for item in data.get("model", [])]
    media = [ManifestEntry.model_validate(item) for item in data.get("media", [])]
    return Manifest(models={m.name: m for m in models}, media={m.name: m for m in media})


def _dirs_from_env(variable: str, default: str) -> list[Path]:
    value = os.environ.get(variable)
    if value:
        return [Path(part) for part in value.split(os.pathsep) if part]
    return [Path.cwd() / default]


def model_dirs(override: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for model files: the override, else EDGE_MODEL_DIR, else ./models."""
    if override:
        return [Path(override)]
    return _dirs_from_env("EDGE_MODEL_DIR", "models")


def media_dirs() -> list[Path]:
    """Folders searched for demo clips: EDGE_MEDIA_DIR, else ./media."""
    return _dirs_from_env("EDGE_MEDIA_DIR", "media")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def candidate_paths(file_name: str, task: str, search_dirs: list[Path]) -> list[Path]:
    """Return `<dir>/<file>` and `<dir>/<task>/<file>` for each search folder, in search order."""
    return [candidate for directory in search_dirs for candidate in (directory / file_name, directory / task / file_name)]


def find_file(file_name: str, task: str, search_dirs: list[Path]) -> Path | None:
    """Return the first `<dir>/<file>` or `<dir>/<task>/<file>` that exists."""
    return next((candidate for candidate in candidate_paths(file_name, task, search_dirs) if candidate.is_file()),
                None)


def verify_file(entry: ManifestEntry, path: Path) -> None:
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise AssetError(
            f"{path} has sha256 {actual}, expected {entry.sha256} for '{entry.name}'; the file is corrupt "
            f"or a different version: delete it and run `edge models fetch {entry.name}`"
        )


def resolve_file(entry: ManifestEntry, search_dirs: list[Path]) -> Path:
    """Find the entry's file in `search_dirs` and check its sha256; raise AssetError naming the fix."""
    path = find_file(entry.file, entry.task, search_dirs)
    if path is None:
        folders = [candidate for candidate in candidate_paths(entry.file, entry.task, search_dirs) if candidate.is_dir()]
        if folders:
            # An unpacked archive can leave a folder with the model's name where the file belongs.
            raise AssetError(
                f"{folders[0]} for '{entry.name}' is a directory, not the model file; remove or rename it and "
                f"run `edge models fetch {entry.name}`, or put the file {entry.file} (sha256 {entry.sha256}) there"
            )
        looked_in = ", ".join(str(d) for d in search_dirs)
        variable = "EDGE_MODEL_DIR" if isinstance(entry, ModelEntry) else "EDGE_MEDIA_DIR"
        raise AssetError(
            f"{entry.file} for '{entry.name}' not found in {looked_in} (or their {entry.task}/ sub-folders); "
            f"expected sha256 {entry.sha256}; run `edge models fetch {entry.name}` or set {variable}"
        )
    verify_file(entry, path)
    return path
