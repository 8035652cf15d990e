"""Audit rows as the audit page shows them: labelled details with known values in the page's language."""

from __future__ import annotations

import json

from edge.web.auth import ROLES
from edge.web.i18n import Translator
from edge.web.render import HIT_TOPICS
from edge.web.routes_hits import HIT_TYPES, PLATE_MODES

# Detail keys with a label in the catalogues' [audit.fields]; other keys are shown as they are stored.
AUDIT_DETAIL_FIELDS = (
    "name", "role", "old_role", "required_role", "method", "path", "throttled", "query", "results", "rows", "hit_id",
    "topic", "camera_id", "note", "entry_id", "pattern", "list_name", "reason", "max_edits", "removed", "file_name",
    "file_names", "sha256", "loaded", "rejected", "person_id", "user_id", "sessions_ended", "disabled",
    "list_names", "entry_ids", "more_lists",
)
ROLE_FIELDS = ("role", "old_role", "required_role")
# Search form parameters in the order of the form, with the label of each in the catalogues' [search].
SEARCH_PARAMETERS = ("plate", "mode", "camera", "since", "until", "type", "list", "page")


def format_detail(t: Translator, detail: dict) -> str:
    """Return an audit row's detail as "label: value" pairs in the page's language, keys in sorted order."""
    pairs = []
    for key in sorted(detail):
        label = t(f"audit.fields.{key}") if key in AUDIT_DETAIL_FIELDS else key
        pairs.append(t("audit.detail_format.pair", field=label, value=format_value(t, key, detail[key])))
    return t("audit.detail_format.separator").join(pairs)


def format_value(t: Translator, key: str, value: object) -> str:
    """Translate the values that the pages name in words, such as hit types and roles; keep the others."""
    if key == "topic" and value in HIT_TOPICS:
        return t(f"topic.{value}")
    if key in ROLE_FIELDS and value in ROLES:
        return t(f"role.{value}")
    if key == "query" and isinstance(value, dict):
        return format_search(t, value)
    if isinstance(value, bool):
        return t("audit.detail_format.yes" if value else "audit.detail_format.no")
    if isinstance(value, list) and all(isinstance(item, (str, int)) for item in value):
        return t("audit.detail_format.list_separator").join(str(item) for item in value)
    if isinstance(value, str):
        return value
    # ensure_ascii=False keeps Chinese names readable, and the template escapes the text.
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def format_search(t: Translator, query: dict) -> str:
    """Return the parameters of a search with the search form's labels and words, in the form's order."""
    known = [key for key in SEARCH_PARAMETERS if key in query]
    others = sorted(key for key in query if key not in SEARCH_PARAMETERS)
    pairs = []
    for key in known + others:
        value = str(query[key])
        if key == "type" and value in HIT_TYPES:
            value = t("search.type_" + value.replace(".", "_"))
        elif key == "mode" and value in PLATE_MODES:
            value = t(f"search.mode_{value}")
        label = t(f"search.{key}") if key in SEARCH_PARAMETERS else key
        pairs.append(t("audit.detail_format.query_pair", field=label, value=value))
    return t("audit.detail_format.query_separator").join(pairs)
