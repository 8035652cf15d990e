"""Read TOML config files into validated models, collecting every problem before raising."""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from edge.config.errors import ConfigError, ConfigIssue, issue, issues_from_validation
from edge.config.pipeline import PipelineConfig
from edge.config.site import SiteConfig, duplicate_id_message, first_duplicate_id

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PIPELINE_DIR = PROJECT_ROOT / "pipelines"


def read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError([issue(path, "", "file not found; check the path")]) from None
    except IsADirectoryError:
        raise ConfigError([issue(path, "", "is a directory; give the path of a TOML file")]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([issue(path, "", f"not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                                 f"{error.start}); save the file as UTF-8")]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([issue(path, "", f"invalid TOML: {error}")]) from None
    except OSError as error:
        raise ConfigError([issue(path, "", f"cannot read the file: {error.strerror}")]) from None


def _model_at(model: type[BaseModel], loc: tuple[object, ...]) -> type[BaseModel] | None:
    """Return the pydantic model class that owns the field at `loc`, for listing its allowed fields."""
    current: object = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
        # Unwrap list[Model] and Model | None down to the model class.
        while typing.get_origin(current) is not None:
            inner = [arg for arg in typing.get_args(current) if arg is not type(None)]
            if not inner:
                return None
            current = inner[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


ModelT = typing.TypeVar("ModelT", bound=BaseModel)


def validate(model: type[ModelT], data: dict, path: Path) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        issues = issues_from_validation(path, error)
        for index, detail in enumerate(error.errors(include_url=False)):
            if detail["type"] != "extra_forbidden":
                continue
            owner = _model_at(model, detail["loc"][:-1])
            if owner is not None:
                allowed = ", ".join(owner.model_fields)
                old = issues[index]
                issues[index] = issue(old.file, old.field_path, f"unknown field; allowed fields: {allowed}")
        raise ConfigError(issues) from None


def load_site(path: str | Path) -> SiteConfig:
    """Load and validate a site config; raise ConfigError listing every invalid field."""
    path = Path(path)
    return validate_site(read_toml(path), path)


def validate_site(data: dict, path: Path) -> SiteConfig:
    """Validate the parsed site config `data` read from `path`; raise ConfigError listing every invalid field.

    The checks on the raw data run whether or not the schema accepts the file, so that one run of
    check-config lists every error. Pydantic checks the camera list as a whole, for duplicate ids,
    only when every camera is valid, so a duplicate is also looked for in the raw data.
    """
    raw_issues = _database_path_issues(data, path)
    try:
        site = validate(SiteConfig, data, path)
    except ConfigError as error:
        issues = error.issues + raw_issues
        duplicate = first_duplicate_id(_raw_camera_ids(data))
        message = duplicate_id_message(duplicate) if duplicate is not None else None
        if message is not None and all(item.message != message for item in issues):
            issues.append(issue(path, "cameras", message))
        raise ConfigError(issues) from None
    if raw_issues:
        raise ConfigError(raw_issues)
    return site


def raw_cameras(data: dict) -> list[dict]:
    """Return the camera tables of a parsed site config that has not been validated, skipping malformed ones."""
    cameras = data.get("cameras")
    return [camera for camera in cameras if isinstance(camera, dict)] if isinstance(cameras, list) else []


def _raw_camera_ids(data: dict) -> list[str]:
    ids = [camera.get("id") for camera in raw_cameras(data)]
    return [camera_id for camera_id in ids if isinstance(camera_id, str)]


# SQLite files of the site config that the daemon creates when missing, with an example path for each.
DATABASE_FIELDS = (("publisher", "outbox_path", "data/outbox.sqlite"), (None, "watchlist_db", "data/watchlists.sqlite"))


def _database_path_issues(data: dict, path: Path) -> list[ConfigIssue]:
    """Return an issue for each database path that names a directory, relative to the config file's folder."""
    issues = []
    for section, field, example in DATABASE_FIELDS:
        table = data.get(section) if section else data
        value = table.get(field) if isinstance(table, dict) else None
        if isinstance(value, str) and value and (path.parent / value).is_dir():
            field_path = f"{section}.{field}" if section else field
            issues.append(issue(path, field_path, f"is a directory; give the path of an SQLite file, such as "
                                f"{example}, which the daemon creates when it is missing", value))
    return issues


def resolve_pipeline_dir(pipeline_dir: str | None, site_path: Path) -> Path:
    """Return the pipelines folder that a site config's `pipeline_dir` names, relative to the config file."""
    if pipeline_dir is None:
        return DEFAULT_PIPELINE_DIR
    return (site_path.parent / pipeline_dir).resolve()


def load_pipeline(name: str, pipeline_dir: Path) -> PipelineConfig:
    """Load `<pipeline_dir>/<name>.toml`; the pipeline's name is its file name."""
    path = pipeline_dir / f"{name}.toml"
    if not path.is_file():
        available = sorted(p.stem for p in pipeline_dir.glob("*.toml"))
        raise ConfigError(
            [issue(path, "", f"pipeline '{name}' not found in {pipeline_dir}; available: {', '.join(available)}")]
        )
    data = read_toml(path)
    if data.get("name", name) != name:
        raise ConfigError([issue(path, "name", f"must match the file name '{name}'", data["name"])])
    data["name"] = name
    return validate(PipelineConfig, data, path)


def web_only_fields(path: Path) -> list[str]:
    """Return the top-level fields of the TOML file at `path` that only a web service config has.

    Returns [] when the file also has a site config field, or cannot be read as TOML, so that a site
    config with a misplaced web field is not taken for a web config.
    """
    from edge.config.web import WebConfig

    try:
        data = read_toml(path)
    except ConfigError:
        return []
    if any(key in SiteConfig.model_fields for key in data):
        return []
    return [key for key in data if key in WebConfig.model_fields]


def load_web(path: str | Path) -> "WebConfig":
    """Load and validate a web service config; raise ConfigError listing every invalid field."""
    from edge.config.web import WebConfig

    path = Path(path)
    return validate(WebConfig, read_toml(path), path)
