"""Web service config: which feeds it stores, how long it keeps hits, where it listens."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from edge.config.site import StrictModel

LANGUAGES = ("zh-CN", "en")
# The data folder beside the config file when neither data_dir nor EDGE_DATA_DIR is set.
DEFAULT_DATA_DIR = "web-data"
ZMQ_ENDPOINT_PATTERN = r"^(tcp|ipc)://.+$"


class FeedSource(StrictModel):
    """One daemon's ZeroMQ feed."""

    endpoint: str = Field(pattern=ZMQ_ENDPOINT_PATTERN,
                          description="The daemon's PUB endpoint, e.g. tcp://127.0.0.1:5556.")
    replay_endpoint: str | None = Field(
        default=None,
        pattern=ZMQ_ENDPOINT_PATTERN,
        description="The daemon's replay ROUTER endpoint; with it the service fetches hits it missed while "
        "it was down or that a sequence gap shows, without it such hits stay missing.",
    )


class RetentionConfig(StrictModel):
    days: float = Field(
        default=30.0, gt=0, le=3650,
        description="Hits and plate reads older than this are deleted, snapshots included; lower it to "
        "keep less personal data.",
    )
    max_mb: int = Field(
        default=20_000, ge=10,
        description="Disk cap for the database and snapshot files together; the oldest hits go first when "
        "it is exceeded.",
    )
    check_interval_s: float = Field(default=60.0, gt=0, le=3600, description="How often retention runs.")


class FaceEnrolConfig(StrictModel):
    """Models that check and embed uploaded watchlist photos; they must match the daemons' face stage."""

    detector: str = Field(default="yunet_s_640", description="Face detector model name from models/manifest.toml.")
    embedder: str = Field(default="mobilefacenet_128d", description="Face embedder model name from the manifest.")


class WebConfig(StrictModel):
    listen_host: str = Field(
        default="127.0.0.1",
        description="Address to listen on; keep 127.0.0.1 behind a TLS reverse proxy on shared networks.",
    )
    listen_port: int = Field(default=8080, ge=1, le=65535)
    data_dir: str | None = Field(
        default=None,
        min_length=1,
        description="Folder for the database and snapshot files; a relative path is taken beside the config file. "
        "When unset, $EDGE_DATA_DIR (which the systemd unit sets to /var/lib/edge-web), else web-data beside "
        "the config file.",
    )
    feeds: list[FeedSource] = Field(default_factory=list, description="Daemon feeds to store and show.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    timezone: str = Field(default="Asia/Shanghai", description="Time zone in which pages show times (IANA name).")
    default_language: str = Field(default="zh-CN", description=f"Page language before a user switches: {', '.join(LANGUAGES)}.")
    api_tokens: list[str] = Field(
        default_factory=list,
        description="Tokens with which daemons fetch watchlists (Authorization: Bearer TOKEN); at least 32 "
        "characters each. Empty disables the watchlist API.",
    )
    secure_cookies: bool = Field(
        default=False,
        description="Mark the login cookie Secure, so browsers send it over HTTPS only; set true when a TLS "
        "reverse proxy serves the page.",
    )
    bootstrap_admin: bool = Field(
        default=False,
        description="When no user exists yet, create user 'admin' with a random password and print the "
        "password once on standard output. Meant for the demo; on a real site use `edge web adduser`.",
    )
    session_ttl_s: float = Field(default=12 * 3600, gt=60, le=30 * 24 * 3600, description="Idle time after which a login expires.")
    face_enrol: FaceEnrolConfig = Field(default_factory=FaceEnrolConfig)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai or UTC") from None
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"unknown language {value!r}; allowed: {', '.join(LANGUAGES)}")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _long_tokens(cls, tokens: list[str]) -> list[str]:
        for index, token in enumerate(tokens):
            if len(token) < 32:
                raise ValueError(f"token {index + 1} has {len(token)} characters; use at least 32, e.g. from "
                                 "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return tokens

    def data_path(self, config_dir: Path) -> Path:
        if self.data_dir is None and os.environ.get("EDGE_DATA_DIR"):
            return Path(os.environ["EDGE_DATA_DIR"]).resolve()
        path = Path(self.data_dir or DEFAULT_DATA_DIR)
        return path if path.is_absolute() else (config_dir / path).resolve()
