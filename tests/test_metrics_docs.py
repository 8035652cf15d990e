"""docs/metrics.md and its translation list every metric family that the endpoint serves, with its type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.metrics import InferenceStats, render_metrics
from tests.test_metrics import HEALTH

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("metrics.md", "metrics.zh-CN.md")
# A table row whose first cell is a metric name: | `edge_...` | type | ...
TABLE_ROW = re.compile(r"^\| `(edge_[a-z0-9_]+)` \| ([a-z]+) \|", re.MULTILINE)


def full_health() -> dict:
    """Return a `health` body with every optional part, so that every family the code can serve is rendered."""
    return {
        **HEALTH,
        "plates": {"pipelines": {"plates": {"plates_published": 7, "hits_published": 2, "repeats_suppressed": 1}},
                   "watchlist_version": 4},
        "faces": {"hits_published": 1, "repeats_suppressed": 2, "gallery_persons": 3},
        "publisher": {**HEALTH["publisher"], "outbox_messages": 12},
    }


def served_families() -> dict[str, str]:
    """Return the type of every family in the rendered text, by name, from its # TYPE line."""
    stats = InferenceStats()
    stats.record("yolox_nano_416", 0.012, 2)
    text = render_metrics(full_health(), stats, {"gate-1": 9.5, "gate-2": 0.0})
    families = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            families[name] = kind
    return families


def documented_families(page: str) -> dict[str, str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return {name: kind for name, kind in TABLE_ROW.findall(text)}


def test_representative_body_renders_all_groups():
    """full_health() must reach every group of families, or the docs checks would miss the ones it skips."""
    families = served_families()

    for prefix in ("edge_camera_", "edge_pipeline_", "edge_inference_", "edge_plates_", "edge_faces_",
                   "edge_publisher_", "edge_uptime_"):
        assert any(name.startswith(prefix) for name in families), prefix
    assert "edge_camera_frames_per_second" in families
    assert "edge_camera_plates_read_total" in families
    assert "edge_camera_face_hits_total" in families
    assert "edge_publisher_outbox_messages" in families


@pytest.mark.parametrize("page", PAGES)
def test_docs_list_every_served_family(page):
    documented = documented_families(page)

    missing = sorted(set(served_families()) - set(documented))
    assert not missing, f"{page} has no table row for: {', '.join(missing)}"


@pytest.mark.parametrize("page", PAGES)
def test_docs_list_no_unserved_family(page):
    served = served_families()

    stale = sorted(set(documented_families(page)) - set(served))
    assert not stale, f"{page} lists families that the code does not serve: {', '.join(stale)}"


@pytest.mark.parametrize("page", PAGES)
def test_docs_give_served_type(page):
    served = served_families()
    documented = documented_families(page)

    wrong = {name: (kind, served[name]) for name, kind in documented.items() if name in served
             and served[name] != kind}
    assert not wrong, f"{page}: documented vs served type: {wrong}"
