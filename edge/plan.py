"""Resolve a site config into a run plan: pipelines, model files and camera sources, all checked up front.

`edge check-config` and `edge run` share this, so whatever check-config accepts, run can start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import ValidationError

from edge.config import CameraConfig, ConfigError, ConfigIssue, PipelineConfig, SiteConfig, load_pipeline
from edge.config.errors import issue
from edge.config.loader import raw_cameras, read_toml, resolve_pipeline_dir, validate_site
from edge.config.site import RTSP_SCHEMES, WatchlistSourceConfig
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


def read_site_with_overrides(site_path: Path, overrides: dict[str, str]) -> dict:
    """Read the site file and put the --source overrides into its camera tables, without validating it."""
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
    return data


def load_site_with_overrides(site_path: Path, overrides: dict[str, str]) -> SiteConfig:
    return validate_site(read_site_with_overrides(site_path, overrides), site_path)


@dataclass(frozen=True)
class CameraRefs:
    """The fields of one camera that the checks beyond the schema read. None marks an invalid field."""

    index: int  # position in the site file's camera list
    id: str | None
    enabled: bool | None
    pipeline: str | None
    source: str | None
    plate_camera: bool | None
    face_camera: bool | None
    max_frame_width: int | None  # also None when unset


def camera_refs(index: int, camera: CameraConfig) -> CameraRefs:
    return CameraRefs(index, camera.id, camera.enabled, camera.pipeline, camera.source, camera.plate_camera,
                      camera.face_camera, camera.max_frame_width)


def raw_camera_refs(index: int, table: dict) -> CameraRefs:
    """Return the valid fields of one camera table of a site file that failed validation."""
    try:
        return camera_refs(index, CameraConfig.model_validate(table))
    except ValidationError as error:
        invalid = {detail["loc"][0] for detail in error.errors(include_url=False) if detail["loc"]}

    def valid(name: str) -> object:
        if name in invalid:
            return None
        return table.get(name, CameraConfig.model_fields[name].default)

    return CameraRefs(index, valid("id"), valid("enabled"), valid("pipeline"), valid("source"),
                      valid("plate_camera"), valid("face_camera"), valid("max_frame_width"))


@dataclass(frozen=True)
class ReferenceCheck:
    issues: list[ConfigIssue]
    pipelines: dict[str, PipelinePlan]
    sources: dict[str, str]  # camera id -> URL or resolved file path, enabled cameras only


def check_references(site_path: Path, pipeline_dir_setting: str | None, model_dir: str | None,
                     watchlist_source: WatchlistSourceConfig | None, cameras: list[CameraRefs],
                     overrides: dict[str, str]) -> ReferenceCheck:
    """Check what the site file refers to: pipeline files, their models, camera sources and the token file."""
    issues: list[ConfigIssue] = []
    enabled = [camera for camera in cameras if camera.enabled]
    search_model_dirs = model_dirs((site_path.parent / model_dir).resolve() if model_dir else None)
    pipelines = plan_pipelines(site_path, pipeline_dir_setting, search_model_dirs, enabled, issues)
    issues += camera_pipeline_issues(site_path, enabled, pipelines)
    sources = resolve_sources(site_path, enabled, overrides, issues)

    if watchlist_source is not None:
        # The daemon reads the token only after loading its models, so check-config (the systemd unit's
        # ExecStartPre) checks it here, before a start that would fail.
        try:
            read_token_file(site_path.parent / watchlist_source.token_file)
        except WatchlistSourceError as error:
            issues.append(issue(site_path, "watchlist_source.token_file", str(error)))

    if cameras and all(camera.enabled is False for camera in cameras):
        issues.append(issue(site_path, "cameras", "every camera is disabled; enable at least one"))
    return ReferenceCheck(issues, pipelines, sources)


def plan_pipelines(site_path: Path, pipeline_dir_setting: str | None, search_model_dirs: list[Path],
                   enabled: list[CameraRefs], issues: list[ConfigIssue]) -> dict[str, PipelinePlan]:
    """Load the pipeline files of the enabled cameras and resolve their models, appending problems to `issues`."""
    manifest = load_manifest()
    pipeline_dir = resolve_pipeline_dir(pipeline_dir_setting, site_path)
    pipelines: dict[str, PipelinePlan] = {}
    pipeline_dir_exists = pipeline_dir.is_dir()
    if not pipeline_dir_exists:
        # One error for the folder instead of one "no pipeline file" per camera with an empty list.
        problem = "is a file, not a folder" if pipeline_dir.exists() else "does not exist"
        issues.append(issue(site_path, "pipeline_dir", f"folder {pipeline_dir} {problem}; give the folder that "
                            "holds the pipeline TOML files, relative to the config file's folder",
                            pipeline_dir_setting))
    for camera in enabled:
        if camera.pipeline is None or camera.pipeline in pipelines or not pipeline_dir_exists:
            continue
        pipeline_path = pipeline_dir / f"{camera.pipeline}.toml"
        if not pipeline_path.is_file():
            available = ", ".join(sorted(p.stem for p in pipeline_dir.glob("*.toml")))
            issues.append(issue(site_path, f"cameras[{camera.index}].pipeline", f"no pipeline file {pipeline_path}; "
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
    return pipelines


def camera_pipeline_issues(site_path: Path, enabled: list[CameraRefs],
                           pipelines: dict[str, PipelinePlan]) -> list[ConfigIssue]:
    """Return the camera options that the camera's pipeline cannot serve."""
    issues = []
    for camera in enabled:
        plan = pipelines.get(camera.pipeline) if camera.pipeline is not None else None
        if plan is None:
            continue
        index = camera.index
        if camera.plate_camera and plan.config.plates is None:
            issues.append(issue(site_path, f"cameras[{index}].plate_camera", f"pipeline '{camera.pipeline}' has no "
                                "[plates] stage; use a pipeline with one, such as 'plates'", True))
        if camera.face_camera and plan.config.faces is None:
            issues.append(issue(site_path, f"cameras[{index}].face_camera", f"pipeline '{camera.pipeline}' has no "
                                "[faces] stage; use a pipeline with one, such as 'faces'", True))
        if camera.max_frame_width is not None and (plan.config.plates or plan.config.faces):
            issues.append(issue(site_path, f"cameras[{index}].max_frame_width", f"pipeline '{camera.pipeline}' "
                                "reads plates or faces, which need full-resolution frames; remove max_frame_width "
                                "or use a detect-only pipeline", camera.max_frame_width))
    return issues


def resolve_sources(site_path: Path, enabled: list[CameraRefs], overrides: dict[str, str],
                    issues: list[ConfigIssue]) -> dict[str, str]:
    """Map each enabled camera id to its URL or file path, appending the files not found to `issues`."""
    sources: dict[str, str] = {}
    for camera in enabled:
        if camera.source is None:
            continue
        source = resolve_source(camera.source, site_path.parent, media_dirs())
        if source is None:
            # A source given on the command line is named as such, because the config file does not hold it.
            field = f"--source {camera.id}" if camera.id in overrides else f"cameras[{camera.index}].source"
            issues.append(issue(site_path, field, "file not found beside the config file "
                                "or in the media folders (EDGE_MEDIA_DIR, ./media); give an existing path",
                                camera.source))
        elif camera.id is not None:
            sources[camera.id] = source
    return sources


def raw_reference_issues(data: dict, site_path: Path, overrides: dict[str, str]) -> list[ConfigIssue]:
    """Run the checks beyond the schema on the valid parts of a site file that failed validation.

    Each camera's checks read only its valid fields, so they add no error that follows from one already
    reported, and a camera whose `enabled` is invalid is skipped.
    """
    tables = data.get("cameras")
    tables = tables if isinstance(tables, list) else []
    cameras = [raw_camera_refs(index, table) for index, table in enumerate(tables) if isinstance(table, dict)]
    pipeline_dir, model_dir = data.get("pipeline_dir"), data.get("model_dir")
    if not all(folder is None or isinstance(folder, str) for folder in (pipeline_dir, model_dir)):
        # Without their folders the pipeline files and models cannot be found, so they are not checked.
        pipeline_dir = model_dir = None
        cameras = [replace(camera, pipeline=None) for camera in cameras]
    try:
        watchlist_source = WatchlistSourceConfig.model_validate(data.get("watchlist_source"))
    except ValidationError:
        watchlist_source = None
    return check_references(site_path, pipeline_dir, model_dir, watchlist_source, cameras, overrides).issues


def unique_issues(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    # Cameras sharing a broken pipeline would otherwise repeat its errors once each.
    return list({str(item): item for item in issues}.values())


def build_plan(site_path: str | Path, overrides: dict[str, str] | None = None) -> RunPlan:
    """Validate the site file and everything it refers to; raise ConfigError listing every problem."""
    site_path = Path(site_path)
    overrides = overrides or {}
    data = read_site_with_overrides(site_path, overrides)
    try:
        site = validate_site(data, site_path)
    except ConfigError as error:
        # The files that the valid fields name are checked too, so that one run lists every error.
        raise ConfigError(unique_issues(error.issues + raw_reference_issues(data, site_path, overrides))) from None

    cameras = [camera_refs(index, camera) for index, camera in enumerate(site.cameras)]
    check = check_references(site_path, site.pipeline_dir, site.model_dir, site.watchlist_source, cameras, overrides)
    if check.issues:
        raise ConfigError(unique_issues(check.issues))
    return RunPlan(site=site, site_path=site_path, pipelines=check.pipelines, sources=check.sources)
