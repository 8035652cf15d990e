"""Pages for hits: live list, search with CSV export, hit detail with acknowledge, and the hit images."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from datetime import datetime, timezone

import cv2
import numpy as np
from aiohttp import web

from edge.web.auth import USER_KEY
from edge.web.audit import audit_request
from edge.web.keys import HIT_STORE_KEY, LIVE_HUB_KEY, WATCHLIST_KEY
from edge.plates.grammar import COLOURS, PLATE_TYPES, normalise_plate_text
from edge.watchlist.faces import FaceWatchlist
from edge.web.i18n import Translator
from edge.web.render import (HIT_TOPICS, TIMEZONE_KEY, local_time, page_number, path_id, render, request_language,
                              translator)
from edge.web.security import SESSION_COOKIE, SESSION_STORE_KEY, require_role
from edge.web.store import MAX_ACK_NOTE_CHARS, AlreadyAcknowledgedError, HitQuery, StoredHit

log = logging.getLogger(__name__)

PAGE_SIZE = 50
LIVE_ROWS = 50
# Rows in one CSV export; a larger result must be narrowed first, so one click never dumps the database.
MAX_EXPORT_ROWS = 10_000
EXPORT_PAGE_SIZE = 500
# The store enforces the same bound; the page checks it first to show the error in the user's language.
MAX_NOTE_CHARS = MAX_ACK_NOTE_CHARS
PLATE_MODES = ("exact", "prefix", "wildcard")
# A plate has at most 8 characters; the rest is room for wildcards and separators such as "·".
MAX_PLATE_QUERY_CHARS = 32
HIT_TYPES = ("hits", "hit.plate", "hit.face", "plate")
BOX_COLOUR_BGR = (0, 0, 255)
PLATE_COLOUR_BGR = (0, 255, 255)
# Enrolled photos shown beside a face hit, for an investigator to compare with the face crop.
MAX_ENROLLED_PHOTOS_SHOWN = 3


class QueryError(ValueError):
    """A search field is invalid; `key` is the catalogue key of the message shown beside the form."""

    def __init__(self, key: str, value: str):
        super().__init__(f"{key}: {value!r}")
        self.key = key
        self.value = value


def parse_search(request: web.Request) -> HitQuery:
    """Build a query from the search form's GET parameters; raise QueryError for an invalid field."""
    params = request.query
    plate_mode = params.get("mode", "exact")
    if plate_mode not in PLATE_MODES:
        raise QueryError("search.error_mode", plate_mode)
    plate = params.get("plate", "").strip() or None
    if plate is not None and len(plate) > MAX_PLATE_QUERY_CHARS:
        raise QueryError("search.error_plate_long", str(MAX_PLATE_QUERY_CHARS))
    # Investigators type 苏B*123 and expect the wildcard to work without changing the mode. A Chinese input
    # method types the full-width ＊ and ？, which count as wildcards too.
    if plate_mode == "exact" and plate is not None and any(character in normalise_plate_text(plate)
                                                            for character in "*?"):
        plate_mode = "wildcard"
    hit_type = params.get("type", "hits")
    if hit_type not in HIT_TYPES:
        raise QueryError("search.error_type", hit_type)
    since = _local_datetime(request, "since")
    until = _local_datetime(request, "until")
    if since is not None and until is not None and since >= until:
        raise QueryError("search.error_time_order", params["until"])
    return HitQuery(
        plate=plate,
        plate_mode=plate_mode,
        camera_id=params.get("camera", "").strip() or None,
        since=since,
        until=until,
        topic=hit_type,
        list_name=params.get("list", "").strip() or None,
    )


def _local_datetime(request: web.Request, name: str) -> datetime | None:
    """Read a datetime-local field (site time zone, as the browser shows it) as an aware datetime."""
    text = request.query.get(name, "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError("search.error_time", text) from None
    value = value.replace(tzinfo=request.app[TIMEZONE_KEY]) if value.tzinfo is None else value
    try:
        value.astimezone(timezone.utc)
    except OverflowError:
        # Such as 0001-01-01T00:00 east of UTC, which is before the first moment that datetime can hold.
        raise QueryError("search.error_time", text) from None
    return value


async def live_page(request: web.Request) -> web.Response:
    store = request.app[HIT_STORE_KEY]
    page = await asyncio.to_thread(store.search, HitQuery(topic="hits"), 1, LIVE_ROWS)
    return render(request, "live.html", hits=page.hits)


async def live_rows(request: web.Request) -> web.Response:
    """Return the table rows of the latest hits, for a live page that reconnects after missing some."""
    store = request.app[HIT_STORE_KEY]
    page = await asyncio.to_thread(store.search, HitQuery(topic="hits"), 1, LIVE_ROWS)
    return render(request, "_hit_rows.html", hits=page.hits)


async def live_socket(request: web.Request) -> web.WebSocketResponse:
    user = request[USER_KEY]
    sessions, token = request.app[SESSION_STORE_KEY], request.cookies.get(SESSION_COOKIE, "")
    return await request.app[LIVE_HUB_KEY].serve(request, request_language(request), user.name,
                                                 lambda: sessions.is_live(token))


async def search_page(request: web.Request) -> web.Response:
    store = request.app[HIT_STORE_KEY]
    searched = bool(request.query)
    error = None
    result = None
    try:
        query = parse_search(request)
    except QueryError as invalid:
        error = translator(request)(invalid.key, value=invalid.value)
    else:
        if searched:
            result = await asyncio.to_thread(store.search, query, page_number(request), PAGE_SIZE)
            if result.page > result.pages:
                # A page number past the end, from an old link or a search whose hits were removed since.
                raise web.HTTPFound(str(request.rel_url.update_query(page=result.pages)))
            audit_request(request, "search", query=dict(request.query), results=result.total)
    cameras = await asyncio.to_thread(store.camera_status)
    return render(request, "search.html", status=400 if error else 200, error=error, result=result,
                  form=dict(request.query), plate_modes=PLATE_MODES, hit_types=HIT_TYPES, cameras=cameras,
                  max_plate_chars=MAX_PLATE_QUERY_CHARS,
                  export_url=export_url(request),
                  previous_url=_page_url(request, result, -1), next_url=_page_url(request, result, +1))


def export_url(request: web.Request) -> str:
    """Return the CSV export link for the search on this page: the same filters, every page."""
    # URL.with_path drops the query, so the query is carried over explicitly.
    return str(request.rel_url.with_path("/search.csv").with_query(request.rel_url.query)
               .without_query_params("page"))


def _page_url(request: web.Request, result, step: int) -> str | None:
    if result is None or not 1 <= result.page + step <= result.pages:
        return None
    return str(request.rel_url.update_query(page=result.page + step))


CSV_COLUMNS = (
    ("id", "csv.id"), ("topic", "csv.type"), ("camera_id", "csv.camera"), ("frame_time", "csv.time"),
    ("plate_text", "csv.plate"), ("plate_type", "csv.plate_type"), ("plate_colour", "csv.plate_colour"),
    ("confidence", "csv.confidence"), ("person_name", "csv.person"), ("similarity", "csv.similarity"),
    ("list_name", "csv.list"), ("reason", "csv.reason"), ("acked_by", "csv.acked_by"),
    ("acked_at", "csv.acked_at"), ("ack_note", "csv.ack_note"),
)


@require_role("investigator")
async def export_csv(request: web.Request) -> web.Response:
    store = request.app[HIT_STORE_KEY]
    t = translator(request)
    try:
        query = parse_search(request)
    except QueryError as invalid:
        raise web.HTTPBadRequest(text=t(invalid.key, value=invalid.value))
    first = await asyncio.to_thread(store.search, query, 1, EXPORT_PAGE_SIZE)
    if first.total > MAX_EXPORT_ROWS:
        raise web.HTTPBadRequest(text=t("search.export_too_large", total=first.total, limit=MAX_EXPORT_ROWS))
    hits = list(first.hits)
    for page in range(2, first.pages + 1):
        hits.extend((await asyncio.to_thread(store.search, query, page, EXPORT_PAGE_SIZE)).hits)
    audit_request(request, "export", query=dict(request.query), rows=len(hits))

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([t(key) for _, key in CSV_COLUMNS])
    for hit in hits:
        writer.writerow([_csv_value(request, t, name, getattr(hit, name)) for name, _ in CSV_COLUMNS])
    # The byte order mark makes spreadsheet programs read the Chinese text as UTF-8.
    body = "\ufeff" + buffer.getvalue()
    return web.Response(body=body.encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="hits.csv"'})


# Columns whose values have catalogue texts, with the catalogue section and the values it covers.
CSV_TRANSLATED = {"topic": ("topic", HIT_TOPICS), "plate_type": ("plate_type", PLATE_TYPES),
                  "plate_colour": ("colour", COLOURS)}


def _csv_value(request: web.Request, t: Translator, name: str, value: object) -> str:
    if value is None:
        return ""
    if name in ("frame_time", "acked_at"):
        return local_time(request, value)
    if name in CSV_TRANSLATED and value in CSV_TRANSLATED[name][1]:
        return t(f"{CSV_TRANSLATED[name][0]}.{value}")
    text = str(value)
    # A cell starting with these runs as a formula in spreadsheet programs; a quote keeps it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


async def _hit_or_404(request: web.Request) -> StoredHit:
    hit_id = path_id(request, "hit_id")
    hit = await asyncio.to_thread(request.app[HIT_STORE_KEY].get, hit_id)
    if hit is None:
        raise web.HTTPNotFound()
    return hit


async def hit_page(request: web.Request) -> web.Response:
    hit = await _hit_or_404(request)
    audit_request(request, "view_hit", hit_id=hit.id, topic=hit.topic, camera_id=hit.camera_id)
    return await _hit_response(request, hit)


async def _hit_response(request: web.Request, hit: StoredHit, status: int = 200, error: str | None = None,
                        note: str = "") -> web.Response:
    """Render the hit page; `note` refills the acknowledgement form after a rejected acknowledgement."""
    enrolled = await _enrolled_photo_ids(request, hit)
    return render(request, "hit.html", status=status, hit=hit, max_note_chars=MAX_NOTE_CHARS, error=error,
                  enrolled_photo_ids=enrolled, note=note)


async def _enrolled_photo_ids(request: web.Request, hit: StoredHit) -> list[int] | None:
    """Return the photo ids of the face hit's enrolled person for an investigator, or None for other hits.

    The list is empty when the person is no longer enrolled. A person with the same id but another
    name or list, as after a box matched against a different watchlist, counts as not enrolled.
    """
    person = hit.header.get("person")
    if hit.topic != "hit.face" or not isinstance(person, dict) or not request[USER_KEY].can("investigator"):
        return None
    watchlist = FaceWatchlist(request.app[WATCHLIST_KEY])
    person_id = person.get("id")
    enrolled = await asyncio.to_thread(watchlist.person, person_id) if isinstance(person_id, int) else None
    if enrolled is None or (enrolled.name, enrolled.list_name) != (person.get("name"), person.get("list_name")):
        return []
    photo_ids = await asyncio.to_thread(watchlist.photo_ids, enrolled.id)
    return photo_ids.get(enrolled.id, [])[:MAX_ENROLLED_PHOTOS_SHOWN]


@require_role("investigator")
async def acknowledge(request: web.Request) -> web.Response:
    hit = await _hit_or_404(request)
    if not hit.topic.startswith("hit."):
        # Plain plate reads are kept for search; only watchlist hits are alerts that someone acts on.
        error = translator(request)("hit.not_a_hit")
        return await _hit_response(request, hit, 400, error)
    form = await request.post()
    note = str(form.get("note", "")).strip()
    if len(note) > MAX_NOTE_CHARS:
        error = translator(request)("hit.note_too_long", limit=MAX_NOTE_CHARS)
        return await _hit_response(request, hit, 400, error, note=note)
    user = request[USER_KEY].name
    try:
        await asyncio.to_thread(request.app[HIT_STORE_KEY].acknowledge, hit.id, user, note)
    except AlreadyAcknowledgedError as acknowledged:
        first = acknowledged.hit
        log.info("acknowledgement of hit %d by %s rejected: %s", hit.id, user, acknowledged)
        error = translator(request)("hit.already_acked", user=first.acked_by, time=local_time(request, first.acked_at))
        return await _hit_response(request, first, 409, error)
    audit_request(request, "acknowledge", hit_id=hit.id, note=note)
    raise web.HTTPSeeOther(f"/hits/{hit.id}")


async def hit_image(request: web.Request) -> web.Response:
    hit = await _hit_or_404(request)
    kind = request.match_info["kind"]
    relative = hit.crop_path if kind == "crop" else hit.snapshot_path
    if relative is None:
        raise web.HTTPNotFound()
    path = request.app[HIT_STORE_KEY].media_path(relative)
    if kind != "annotated":
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})
    body = await asyncio.to_thread(annotate_snapshot, path.read_bytes(), hit)
    return web.Response(body=body, content_type="image/jpeg")


def annotate_snapshot(jpeg: bytes, hit: StoredHit) -> bytes:
    """Draw the hit's vehicle or face box, and the plate's corners, on the snapshot."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return jpeg
    thickness = max(2, image.shape[1] // 400)
    if hit.box_xyxy:
        x1, y1, x2, y2 = (int(round(v)) for v in hit.box_xyxy)
        cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOUR_BGR, thickness)
    corners = (hit.header.get("plate") or {}).get("corners_xy")
    if corners:
        points = np.array(corners, dtype=np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [points], True, PLATE_COLOUR_BGR, thickness)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return encoded.tobytes() if ok else jpeg


def add_hit_routes(app: web.Application) -> None:
    app.router.add_get("/", live_page)
    app.router.add_get("/live/rows", live_rows)
    app.router.add_get("/ws/live", live_socket)
    app.router.add_get("/search", search_page)
    app.router.add_get("/search.csv", export_csv)
    app.router.add_get("/hits/{hit_id}", hit_page)
    app.router.add_post("/hits/{hit_id}/ack", acknowledge)
    app.router.add_get(r"/hits/{hit_id}/{kind:snapshot|crop|annotated}.jpg", hit_image)
