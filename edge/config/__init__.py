"""Site and pipeline configuration: TOML files validated by strict pydantic models."""

from edge.config.errors import ConfigError, ConfigIssue
from edge.config.loader import load_pipeline, load_site
from edge.config.pipeline import DetectStage, PipelineConfig
from edge.config.site import CameraConfig, IngestConfig, PublisherConfig, RuntimeConfig, SiteConfig

__all__ = [
    "CameraConfig",
    "ConfigError",
    "ConfigIssue",
    "DetectStage",
    "IngestConfig",
    "PipelineConfig",
    "PublisherConfig",
    "RuntimeConfig",
    "SiteConfig",
    "load_pipeline",
    "load_site",
]
