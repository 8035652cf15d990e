"""Resolve a site config into a run plan: pipelines, model files and camera sources, all checked up front.

`edge check-config` and `edge run` share this, so whatever check-config accepts, run can start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge.config import ConfigError, ConfigIssue, PipelineConfig, SiteConfig, load_pipeline
from edge.config.errors import issue
from edge.config.loader import pipeline_dir_for, raw_cameras, read_toml, resolve_pipeline_dir, validate_site
from edge.config.site import DEFAULT_PIPELINE, PIPELINE_NAME_PATTERN, RTSP_SCHEMES
from edge.ingest.reader import resolve_source
from edge.models.manifest import AssetError, ModelEntry, load_manifest, media_dirs, model_dirs, resolve_file
from edge.faces.detector import FACE_DETECTOR_FAMILIES
from edge.faces.embedder import EMBEDDER_FAMILIES as FACE_EMBEDDER_FAMILIES
from edge.plates.detector import PLATE_DETECTOR_FAMILIES
from edge.plates.recognizer import RECOGNIZER_FAMILIES
from edge.runtime.detector import DETECTOR_FAMILIES
from edge.watchlist.remote import WatchlistSourceError, read_token_file

# Options that only mean something for a file source; dropped when --source swaps in an RTSP URL.
FILE_ONLY_OPTIONS = ("loop", "realtime")


@dataclass(frozen=True)
class ResolvedModel:
    entry: ModelEntry
    path: Path


@dataclass(frozen=True)
class PipelinePlan:
    config: PipelineConfig
    model: ModelEntry
    model_path: Path
    plate_detector: ResolvedModel | None = None
    plate_recognizer: ResolvedModel | None = None
    plate_double_row_recognizer: ResolvedModel | None = None  # None: plate_recognizer reads double-row plates
    face_detector: ResolvedModel | None = None
    face_embedder: ResolvedModel | None = None


@dataclass(frozen=True)
class RunPlan:
    site: SiteConfig
    site_path: Path
    pipelines: dict[str, PipelinePlan]
    sources: dict[str, str]  # camera id -> URL or resolved file path, enabled cameras only


def parse_source_overrides(pairs: list[str]) -> dict[str, str]:
    """Parse 'CAMERA_ID=SOURCE' pairs given on the command line."""
    overrides = {}
    for pair in pairs:
        camera_id, separator, source = pair.partition("=")
        if not separator or not camera_id or not source:
            raise ValueError(f"invalid --source '{pair}'; expected CAMERA_ID=URL_OR_PATH")
        overrides[camera_id] = source
    return overrides


def load_site_with_overrides(site_path: Path, overrides: dict[str, str]) -> SiteConfig:
    data = read_toml(site_path)
    # The tables are changed in place, so the overrides reach `data`.
    cameras = raw_cameras(data)
    known = {camera.get("id") for camera in cameras}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError([issue(site_path, "cameras", f"--source names unknown camera ids {unknown}; "
                                 f"known: {', '.join(sorted(map(str, known)))}")])
    for camera in cameras:
        if camera.get("id") in overrides:
            camera["source"] = overrides[camera["id"]]
            if camera["source"].lower().startswith(RTSP_SCHEMES):
                for option in FILE_ONLY_OPTIONS:
                    camera.pop(option, None)
    return validate_site(data, site_path)


def raw_pipeline_issues(site_path: Path) -> list[ConfigIssue]:
    """Return the errors of the pipeline files that the site file names, read without validating the site."""
    try:
        data = read_toml(site_path)
    except ConfigError:
        return []
    folder = data.get("pipeline_dir")
    pipeline_dir = resolve_pipeline_dir(folder if isinstance(folder, str) else None, site_path)
    names = {camera.get("pipeline", DEFAULT_PIPELINE) for camera in raw_cameras(data)}
    issues: list[ConfigIssue] = []
    for name in sorted(name for name in names if isinstance(name, str) and re.match(PIPELINE_NAME_PATTERN, name)):
        if (pipeline_dir / f"{name}.toml").is_file():
            try:
                load_pipeline(name, pipeline_dir)
            except ConfigError as error:
                issues.extend(error.issues)
    return issues


def build_plan(site_path: str | Path, overrides: dict[str, str] | None = None) -> RunPlan:
    """Validate the site file and everything it refers to; raise ConfigError listing every problem."""
    site_path = Path(site_path)
    try:
        site = load_site_with_overrides(site_path, overrides or {})
    except ConfigError as error:
        # The pipeline files are checked too, so that one run lists their errors beside the site's.
        raise ConfigError(error.issues + raw_pipeline_issues(site_path)) from None
    issues: list[ConfigIssue] = []
    manifest = load_manifest()
    pipeline_dir = pipeline_dir_for(site, site_path)
    search_model_dirs = model_dirs(
        (site_path.parent / site.model_dir).resolve() if site.model_dir else None
    )

    pipelines: dict[str, PipelinePlan] = {}
    enabled = [(index, camera) for index, camera in enumerate(site.cameras) if camera.enabled]
    pipeline_dir_exists = pipeline_dir.is_dir()
    if not pipeline_dir_exists:
        # One error for the folder instead of one "no pipeline file" per camera with an empty list.
        problem = "is a file, not a folder" if pipeline_dir.exists() else "does not exist"
        issues.append(issue(site_path, "pipeline_dir", f"folder {pipeline_dir} {problem}; give the folder that "
                            "holds the pipeline TOML files, relative to the config file's folder",
                            site.pipeline_dir))
    for index, camera in enabled:
        if camera.pipeline in pipelines or not pipeline_dir_exists:
            continue
        pipeline_path = pipeline_dir / f"{camera.pipeline}.toml"
        if not pipeline_path.is_file():
            available = ", ".join(sorted(p.stem for p in pipeline_dir.glob("*.toml")))
            issues.append(issue(site_path, f"cameras[{index}].pipeline", f"no pipeline file {pipeline_path}; "
                                f"available: {available}", camera.pipeline))
            continue
        try:
            pipeline = load_pipeline(camera.pipeline, pipeline_dir)
        except ConfigError as error:
            issues.extend(error.issues)
            continue

        def resolve(field_path: str, name: str, families: tuple[str, ...]) -> ResolvedModel | None:
            try:
                entry = manifest.model(name)
            except AssetError as error:
                issues.append(issue(pipeline_path, field_path, str(error), name))
                return None
            if entry.family not in families:
                issues.append(issue(pipeline_path, field_path, f"model family '{entry.family}' cannot be used "
                                    f"here; allowed families: {', '.join(families)}", name))
                return None
            try:
                return ResolvedModel(entry, resolve_file(entry, search_model_dirs))
            except AssetError as error:
                issues.append(issue(pipeline_path, field_path, str(error), name))
                return None

        detect = resolve("detect.model", pipeline.detect.model, DETECTOR_FAMILIES)
        plate_detector = plate_recognizer = plate_double_row_recognizer = None
        if pipeline.plates is not None:
            plate_detector = resolve("plates.detector", pipeline.plates.detector, PLATE_DETECTOR_FAMILIES)
            plate_recognizer = resolve("plates.recognizer", pipeline.plates.recognizer, RECOGNIZER_FAMILIES)
            if pipeline.plates.double_row_recognizer is not None:
                plate_double_row_recognizer = resolve("plates.double_row_recognizer",
                                                      pipeline.plates.double_row_recognizer, RECOGNIZER_FAMILIES)
        face_detector = face_embedder = None
        if pipeline.faces is not None:
            face_detector = resolve("faces.detector", pipeline.faces.detector, FACE_DETECTOR_FAMILIES)
            face_embedder = resolve("faces.embedder", pipeline.faces.embedder, FACE_EMBEDDER_FAMILIES)
            if (face_embedder is not None and pipeline.faces.match_threshold is None
                    and face_embedder.entry.match_threshold is None):
                issues.append(issue(pipeline_path, "faces.match_threshold", f"model '{face_embedder.entry.name}' "
                                    "has no match_threshold in the manifest; set one here"))
        if detect is not None:
            pipelines[camera.pipeline] = PipelinePlan(pipeline, detect.entry, detect.path, plate_detector,
                                                      plate_recognizer, plate_double_row_recognizer, face_detector,
                                                      face_embedder)

    for index, camera in enabled:
        plan = pipelines.get(camera.pipeline)
        if camera.plate_camera and plan is not None and plan.config.plates is None:
            issues.append(issue(site_path, f"cameras[{index}].plate_camera", f"pipeline '{camera.pipeline}' has no "
                                "[plates] stage; use a pipeline with one, such as 'plates'", True))
        if camera.face_camera and plan is not None and plan.config.faces is None:
            issues.append(issue(site_path, f"cameras[{index}].face_camera", f"pipeline '{camera.pipeline}' has no "
                                "[faces] stage; use a pipeline with one, such as 'faces'", True))
        if camera.max_frame_width is not None and plan is not None and (plan.config.plates or plan.config.faces):
            issues.append(issue(site_path, f"cameras[{index}].max_frame_width", f"pipeline '{camera.pipeline}' "
                                "reads plates or faces, which need full-resolution frames; remove max_frame_width "
                                "or use a detect-only pipeline", camera.max_frame_width))

    sources: dict[str, str] = {}
    for index, camera in enabled:
        source = resolve_source(camera, site_path.parent, media_dirs())
        if source is None:
            # A source given on the command line is named as such, because the config file does not hold it.
            field = f"--source {camera.id}" if camera.id in (overrides or {}) else f"cameras[{index}].source"
            issues.append(issue(site_path, field, "file not found beside the config file "
                                "or in the media folders (EDGE_MEDIA_DIR, ./media); give an existing path",
                                camera.source))
        else:
            sources[camera.id] = source

    if site.watchlist_source is not None:
        # The daemon reads the token only after loading its models, so check-config (the systemd unit's
        # ExecStartPre) checks it here, before a start that would fail.
        try:
            read_token_file(site_path.parent / site.watchlist_source.token_file)
        except WatchlistSourceError as error:
            issues.append(issue(site_path, "watchlist_source.token_file", str(error)))

    if not enabled:
        issues.append(issue(site_path, "cameras", "every camera is disabled; enable at least one"))
    if issues:
        # Cameras sharing a broken pipeline would otherwise repeat its errors once each.
        raise ConfigError(list({str(item): item for item in issues}.values()))
    return RunPlan(site=site, site_path=site_path, pipelines=pipelines, sources=sources)
