"""Server-side page rendering: Jinja2 templates with the request's translator, user and CSRF token."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from edge.config.web import LANGUAGES
from edge.plates.grammar import COLOURS, PLATE_TYPES
from edge.watchlist.enrol import MAX_PHOTO_BYTES
from edge.watchlist.store import MAX_TEXT_LENGTH
from edge.web.auth import USER_KEY, SESSION_KEY
from edge.web.i18n import LANGUAGE_COOKIE, Catalogues, Translator

TEMPLATE_DIR = Path(__file__).parent / "templates"
HIT_TOPICS = ("plate", "hit.plate", "hit.face")
# The largest integer that SQLite stores, and the highest page number a page accepts.
MAX_SQLITE_INTEGER = 2**63 - 1
MAX_PAGE = 1_000_000_000

TEMPLATES_KEY = web.AppKey("templates", jinja2.Environment)
CATALOGUES_KEY = web.AppKey("catalogues", Catalogues)
DEFAULT_LANGUAGE_KEY = web.AppKey("default_language", str)
TIMEZONE_KEY = web.AppKey("timezone", ZoneInfo)


def plate_unsettled(hit: object) -> bool:
    """True for a plate that its box sent when the track ended, before the vote reached its thresholds.

    Boxes of earlier versions send no `settled` field; their plates count as settled.
    """
    header = getattr(hit, "header", None)
    plate = header.get("plate") if isinstance(header, dict) else None
    return isinstance(plate, dict) and plate.get("settled") is False


def setup_rendering(app: web.Application, default_language: str, timezone_name: str) -> None:
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # Values that have a catalogue text; any other value is shown as it came from the feed.
    templates.globals["plate_types"] = PLATE_TYPES
    templates.globals["plate_colours"] = COLOURS
    templates.globals["hit_topics"] = HIT_TOPICS
    templates.globals["plate_unsettled"] = plate_unsettled
    # Form fields stop at the watchlist's own limit, so a too-long reason never gets the store's English error.
    templates.globals["max_text_chars"] = MAX_TEXT_LENGTH
    # Upload forms check the total size of the chosen files against this before sending. The request
    # limit (MAX_REQUEST_BYTES) leaves 64 KiB more for the other fields, so a form within it is not rejected.
    templates.globals["max_upload_bytes"] = MAX_PHOTO_BYTES
    app[TEMPLATES_KEY] = templates
    app[CATALOGUES_KEY] = Catalogues.load()
    app[DEFAULT_LANGUAGE_KEY] = default_language
    app[TIMEZONE_KEY] = ZoneInfo(timezone_name)


def request_language(request: web.Request) -> str:
    language = request.cookies.get(LANGUAGE_COOKIE)
    return language if language in LANGUAGES else request.app[DEFAULT_LANGUAGE_KEY]


def page_number(request: web.Request) -> int:
    """Return the `page` query parameter, or 1 when it is missing, not a number or below 1.

    Pages past MAX_PAGE become MAX_PAGE, so the offset stays within SQLite's 64-bit integers.
    """
    try:
        return min(MAX_PAGE, max(1, int(request.query.get("page", "1"))))
    except ValueError:
        return 1


def query_non_negative_int(request: web.Request, name: str) -> int | None:
    """Return the query parameter `name` when it is a non-negative integer that SQLite can store, else None.

    Only ASCII digits count, because int() also takes a sign, spaces, underscores and the digits of other
    scripts, which a crafted link could use to put its own text in a message.
    """
    text = request.query.get(name, "")
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_SQLITE_INTEGER)):
        return None
    value = int(text)
    return value if value <= MAX_SQLITE_INTEGER else None


def path_id(request: web.Request, name: str) -> int:
    """Return the numeric id in the URL path, or raise 404 when it is no id that SQLite can store."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound() from None
    if not 0 <= value <= MAX_SQLITE_INTEGER:
        raise web.HTTPNotFound()
    return value


def page_path(request: web.Request) -> str:
    """Return the path of the page to show when this request's path is opened again with GET.

    That is the path itself when it has a GET route, else its nearest parent that has one, or '/'. A form
    POST such as /watchlists/plates/import or /users/3/role has no page of its own, so links that reload
    the page, such as the language switch, go to /watchlists/plates or /users instead.
    """
    path = request.rel_url.path_safe
    while path not in ("", "/"):
        if _has_get_route(request.app, path):
            return path
        path = path.rsplit("/", 1)[0]
    return "/"


def _has_get_route(app: web.Application, path: str) -> bool:
    # The router matches `path_safe` (percent-encoded slashes stay encoded), and so does this.
    for resource in app.router.resources():
        info = resource.get_info()
        if "path" in info:
            matches = info["path"] == path
        elif "pattern" in info:
            matches = info["pattern"].fullmatch(path) is not None
        else:
            continue  # static files and sub-apps, which are no pages
        if matches and any(route.method == "GET" for route in resource):
            return True
    return False


def switch_target(request: web.Request) -> str:
    """Return the language switch's target: this page with its query, or the GET page of a form POST."""
    routed = request.match_info.http_exception is None
    if request.method in ("GET", "HEAD") and routed:
        # The query stays, so a search stays on screen.
        return request.rel_url.path_qs
    return page_path(request)


def translator(request: web.Request) -> Translator:
    return request.app[CATALOGUES_KEY].translator(request_language(request))


def format_local_time(value: str | float | None, zone: ZoneInfo) -> str:
    """Format a UTC ISO 8601 string or epoch seconds in `zone`, as 2026-12-04 21:38:13."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, tz=timezone.utc)
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def local_time(request: web.Request, value: str | float | None) -> str:
    return format_local_time(value, request.app[TIMEZONE_KEY])


def render_fragment(app: web.Application, template_name: str, language: str, **context: object) -> str:
    """Render a page fragment outside a request, such as a live hit row sent over WebSocket."""
    zone = app[TIMEZONE_KEY]
    return app[TEMPLATES_KEY].get_template(template_name).render(
        t=app[CATALOGUES_KEY].translator(language),
        local_time=lambda value: format_local_time(value, zone),
        **context,
    )


def render(request: web.Request, template_name: str, status: int = 200, **context: object) -> web.Response:
    """Render a template with `t` (translator), `user`, `csrf_token`, `language` and `local_time` available."""
    template = request.app[TEMPLATES_KEY].get_template(template_name)
    session = request.get(SESSION_KEY)
    html = template.render(
        t=translator(request),
        language=request_language(request),
        languages=LANGUAGES,
        user=request.get(USER_KEY),
        csrf_token=session.csrf_token if session is not None else "",
        local_time=lambda value: local_time(request, value),
        path=request.path,
        switch_next=switch_target(request),
        **context,
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)
