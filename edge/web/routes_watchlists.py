"""Admin pages for the plate and face watchlists that the web service owns and daemons pull."""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import urllib.parse
from pathlib import Path

import cv2
import numpy as np
from aiohttp import web
from yarl import URL

from edge.faces.analyzer import FaceAnalyzer
from edge.faces.detector import FaceDetector
from edge.faces.embedder import FaceEmbedder
from edge.faces.quality import QualityGate
from edge.models.manifest import load_manifest, model_dirs, resolve_file
from edge.watchlist.enrol import MAX_PHOTO_BYTES, MAX_PHOTO_PIXELS, PhotoRejected, check_and_embed_photo
from edge.watchlist.faces import DuplicateFaceError, FaceWatchlist
from edge.watchlist.plates import UnmatchablePatternError, WatchlistError, check_pattern_can_match, normalise_pattern
from edge.web.audit import audit_request
from edge.web.auth import USER_KEY
from edge.web.keys import CONFIG_KEY, WATCHLIST_KEY
from edge.web.render import page_number, path_id, render, translator
from edge.web.security import require_role

log = logging.getLogger(__name__)

# The form around a photo adds a few fields; anything beyond this is rejected by aiohttp before it is read.
MAX_REQUEST_BYTES = MAX_PHOTO_BYTES + 64 * 1024
# Entries per page: a watchlist of 20,000 entries on one page was 8 MB of HTML and took seconds to load.
PLATE_PAGE_SIZE = 100
MAX_FILTER_CHARS = 64
# Messages shown after a redirect, named by the page's `notice` parameter.
PLATE_NOTICES = ("removed", "list_removed", "not_found")
# Enrolled photos are served scaled to at most this many pixels on the longer side, for thumbnails and
# for the comparison beside a face hit. The stored photo may be up to MAX_PHOTO_PIXELS.
PHOTO_VIEW_MAX_SIDE = 320


def _actor(request: web.Request) -> str:
    # The watchlist database keeps its own audit rows, and the prefix marks a change made on the web page.
    return f"web:{request[USER_KEY].name}"


# Plates

async def _plates_page(request: web.Request, status: int = 200, **messages: object) -> web.Response:
    """Render the plates page: one page of the entries that match the GET filters, and the list summary."""
    store = request.app[WATCHLIST_KEY]
    text = request.query.get("q", "").strip()[:MAX_FILTER_CHARS]
    list_filter = request.query.get("list", "").strip()[:MAX_FILTER_CHARS]
    page = page_number(request)
    entries, total = await asyncio.to_thread(store.search_plates, text or None, list_filter or None, page,
                                             PLATE_PAGE_SIZE)
    pages = max(1, math.ceil(total / PLATE_PAGE_SIZE))

    def page_link(number: int) -> str:
        return str(request.rel_url.update_query(page=number).without_query_params("notice", "count"))

    t = translator(request)
    notice = request.query.get("notice", "")
    context = {"message": None, "error": None, "error_detail": None, "rejected": [], "form": {}}
    if notice in PLATE_NOTICES:
        context["message"] = t(f"watchlist.notice_{notice}", count=request.query.get("count", "0")[:9])
    context.update(messages)
    return render(request, "watchlist_plates.html", status=status, entries=entries, total=total, page=page,
                  pages=pages, page_link=page_link, filter_text=text, list_filter=list_filter,
                  lists=await asyncio.to_thread(store.plate_lists), **context)


@require_role("admin")
async def plates_page(request: web.Request) -> web.Response:
    return await _plates_page(request)


@require_role("admin")
async def add_plate(request: web.Request) -> web.Response:
    t = translator(request)
    form = dict(await request.post())
    pattern = str(form.get("pattern", ""))
    list_name = str(form.get("list_name", ""))
    reason = str(form.get("reason", ""))
    try:
        max_edits = int(str(form.get("max_edits", "0")))
    except ValueError:
        return await _plates_page(request, 400, error=t("watchlist.invalid_max_edits"), form=form)
    error = await _plate_form_error(request, pattern, list_name, reason, max_edits)
    if error is not None:
        return await _plates_page(request, 400, error=error, form=form)

    try:
        entry = await asyncio.to_thread(request.app[WATCHLIST_KEY].add_plate, pattern, reason, list_name,
                                        max_edits, _actor(request))
    except WatchlistError as error:
        return await _plates_page(request, 400, error=t("watchlist.invalid_entry"), error_detail=str(error),
                                  form=form)
    audit_request(request, "watchlist_plate_add", entry_id=entry.id, pattern=entry.pattern,
                  list_name=entry.list_name, reason=entry.reason, max_edits=entry.max_edits)
    return await _plates_page(request, message=t("watchlist.plate_added", pattern=entry.pattern))


async def _plate_form_error(request: web.Request, pattern: str, list_name: str, reason: str,
                           max_edits: int) -> str | None:
    """Return the page's message for a missing field, an impossible pattern or a duplicate, else None.

    Other invalid values reach the store, which rejects them with an English detail.
    """
    t = translator(request)
    missing = [key for key, value in (("pattern", pattern), ("list_name", list_name), ("reason", reason))
               if not value.strip()]
    if missing:
        fields = t("watchlist.field_separator").join(t(f"watchlist.{key}") for key in missing)
        return t("watchlist.fields_missing", fields=fields)
    try:
        normalised = normalise_pattern(pattern)
    except WatchlistError:
        return None
    try:
        check_pattern_can_match(normalised, max_edits)
    except UnmatchablePatternError as error:
        return t(f"watchlist.pattern_{error.kind}", pattern=pattern.strip(), published_as=error.published_as)
    entries = await asyncio.to_thread(request.app[WATCHLIST_KEY].list_plates)
    duplicate = next((entry for entry in entries
                      if entry.pattern == normalised and entry.list_name == list_name.strip()), None)
    if duplicate is not None:
        return t("watchlist.duplicate_plate", pattern=duplicate.pattern, list_name=duplicate.list_name,
                 entry_id=duplicate.id)
    return None


@require_role("admin")
async def remove_plate(request: web.Request) -> web.Response:
    entry_id = path_id(request, "entry_id")
    removed = await asyncio.to_thread(request.app[WATCHLIST_KEY].remove_plate, entry_id, _actor(request))
    if removed:
        audit_request(request, "watchlist_plate_remove", entry_id=entry_id)
    raise _after_removal("removed" if removed else "not_found", removed)


@require_role("admin")
async def remove_plate_list(request: web.Request) -> web.Response:
    list_name = str((await request.post()).get("list_name", "")).strip()
    removed = 0
    if list_name:
        removed = await asyncio.to_thread(request.app[WATCHLIST_KEY].remove_list, list_name, _actor(request))
    if removed:
        audit_request(request, "watchlist_plate_remove", list_name=list_name, removed=removed)
    raise _after_removal("list_removed" if removed else "not_found", removed)


def _after_removal(notice: str, removed: int) -> web.HTTPSeeOther:
    """Return the redirect to the plates page that shows the message `notice` for `removed` entries."""
    return web.HTTPSeeOther(str(URL.build(path="/watchlists/plates", query={"notice": notice, "count": removed})))


@require_role("admin")
async def import_plates(request: web.Request) -> web.Response:
    t = translator(request)
    # A body over MAX_REQUEST_BYTES never gets here, because the app's error_page_middleware returns a 413 page.
    form = dict(await request.post())
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return await _plates_page(request, 400, error=t("watchlist.no_file"))
    data = upload.file.read()
    # Some clients percent-encode a non-ASCII file name in the multipart header.
    file_name = Path(urllib.parse.unquote(upload.filename or "")).name or "upload.csv"
    if _is_gbk_not_utf8(data):
        # Excel on Chinese Windows saves "CSV" as GBK; the message explains how to save UTF-8 instead.
        return await _plates_page(request, 400, error=t("watchlist.import_failed"),
                                  error_detail=t("watchlist.import_gbk", file_name=file_name))
    # The store imports from a path, so the upload goes through a private temporary file.
    with tempfile.TemporaryDirectory(prefix="edge-import-") as folder:
        path = Path(folder) / "upload.csv"
        path.write_bytes(data)
        try:
            report = await asyncio.to_thread(request.app[WATCHLIST_KEY].import_plates_csv, path, _actor(request))
        except WatchlistError as error:
            # The detail names the temporary file, so it is replaced by the name of the uploaded file.
            detail = str(error).replace(str(path), file_name)
            return await _plates_page(request, 400, error=t("watchlist.import_failed"), error_detail=detail)
    audit_request(request, "watchlist_plate_import", file_name=upload.filename, sha256=report.sha256,
                  loaded=len(report.loaded), rejected=len(report.rejected))
    message = t("watchlist.imported", loaded=len(report.loaded), rejected=len(report.rejected))
    return await _plates_page(request, message=message, rejected=report.rejected,
                              message_class="warning" if report.rejected else "message")


def _is_gbk_not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return False
    try:
        data.decode("gbk")
    except UnicodeDecodeError:
        return False
    return True


# Faces

class FaceEnroller:
    """The face models that check uploaded photos, loaded on the first upload and then kept."""

    def __init__(self, detector_name: str, embedder_name: str):
        self.detector_name = detector_name
        self.embedder_name = embedder_name
        self._models: tuple[FaceAnalyzer, FaceEmbedder] | None = None

    def models(self) -> tuple[FaceAnalyzer, FaceEmbedder]:
        if self._models is None:
            manifest = load_manifest()
            detector_entry = manifest.model(self.detector_name)
            embedder_entry = manifest.model(self.embedder_name)
            detector = FaceDetector(detector_entry, resolve_file(detector_entry, model_dirs()), ["cpu"])
            embedder = FaceEmbedder(embedder_entry, resolve_file(embedder_entry, model_dirs()), ["cpu"])
            self._models = FaceAnalyzer(detector, embedder, QualityGate()), embedder
        return self._models

    def enrol(self, watchlist: FaceWatchlist, name: str, list_name: str, reason: str,
              photos: list[tuple[str, bytes]], actor: str):
        """Check every (file name, data) photo, then enrol the person from all of them; raise PhotoFileRejected."""
        analyzer, embedder = self.models()
        faces = []
        for file_name, data in photos:
            try:
                faces.append(check_and_embed_photo(data, analyzer, embedder))
            except PhotoRejected as rejected:
                raise PhotoFileRejected(file_name, rejected) from None
        return watchlist.add_person(name, list_name, reason, [(face.jpeg, face.embedding) for face in faces],
                                    faces[0].model_id, actor, match_threshold=embedder.entry.match_threshold)


class PhotoFileRejected(Exception):
    """One uploaded photo of several failed the photo check; nothing was enrolled."""

    def __init__(self, file_name: str, rejected: PhotoRejected):
        super().__init__(f"{file_name}: {rejected.detail}")
        self.file_name = file_name
        self.rejected = rejected


ENROLLER_KEY = web.AppKey("face_enroller", FaceEnroller)


async def _faces_page(request: web.Request, status: int = 200, **messages: object) -> web.Response:
    watchlist = FaceWatchlist(request.app[WATCHLIST_KEY])
    persons = await asyncio.to_thread(watchlist.list_persons)
    photo_ids = await asyncio.to_thread(watchlist.photo_ids)
    context = {"message": None, "error": None, "error_detail": None, "form": {}}
    context.update(messages)
    return render(request, "watchlist_faces.html", status=status, persons=persons, photo_ids=photo_ids,
                  max_photo_mb=MAX_PHOTO_BYTES >> 20, **context)


@require_role("investigator")
async def face_photo(request: web.Request) -> web.Response:
    """Serve an enrolled photo, scaled down, to investigators who compare it with a face hit."""
    photo_id = path_id(request, "photo_id")
    photo = await asyncio.to_thread(FaceWatchlist(request.app[WATCHLIST_KEY]).photo, photo_id)
    if photo is None:
        raise web.HTTPNotFound(text=f"no enrolled photo with id {photo_id}: the person may have been removed")
    body = await asyncio.to_thread(scale_photo, photo.jpeg, PHOTO_VIEW_MAX_SIDE)
    return web.Response(body=body, content_type="image/jpeg")


def scale_photo(jpeg: bytes, max_side: int) -> bytes:
    """Return the JPEG scaled to at most `max_side` pixels on its longer side, or unchanged if it is smaller."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None or max(image.shape[:2]) <= max_side:
        return jpeg
    scale = max_side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.imencode(".jpg", cv2.resize(image, size, interpolation=cv2.INTER_AREA))[1].tobytes()


@require_role("admin")
async def faces_page(request: web.Request) -> web.Response:
    return await _faces_page(request)


@require_role("admin")
async def add_face(request: web.Request) -> web.Response:
    t = translator(request)
    posted = await request.post()
    form = {key: value for key, value in posted.items() if isinstance(value, str)}
    # One person may be enrolled from several photos, within the request size limit in total.
    uploads = [upload for upload in posted.getall("photo", []) if isinstance(upload, web.FileField)]
    if not uploads:
        return await _faces_page(request, 400, error=t("watchlist.no_file"), form=form)
    photos = [(urllib.parse.unquote(upload.filename or "photo"), upload.file.read()) for upload in uploads]
    watchlist = FaceWatchlist(request.app[WATCHLIST_KEY])
    try:
        person = await asyncio.to_thread(
            request.app[ENROLLER_KEY].enrol, watchlist, str(form.get("name", "")), str(form.get("list_name", "")),
            str(form.get("reason", "")), photos, _actor(request))
    except PhotoFileRejected as failed:
        rejected = failed.rejected
        log.info("face photo %r rejected: %s", failed.file_name, rejected.detail)
        error = t(f"watchlist.photo_{rejected.reason_code}", limit_mb=MAX_PHOTO_BYTES >> 20,
                  megapixels=MAX_PHOTO_PIXELS // 1_000_000)
        if len(photos) > 1:
            error = t("watchlist.photo_of_several", file_name=failed.file_name, problem=error)
        return await _faces_page(request, 400, error=error, error_detail=rejected.detail, form=form)
    except DuplicateFaceError as duplicate:
        error = t("watchlist.face_already_enrolled", person_id=duplicate.person_id, name=duplicate.name,
                  list_name=duplicate.list_name)
        return await _faces_page(request, 400, error=error, form=form)
    except WatchlistError as error:
        return await _faces_page(request, 400, error=t("watchlist.invalid_entry"), error_detail=str(error),
                                 form=form)
    audit_request(request, "watchlist_face_add", person_id=person.id, name=person.name,
                  list_name=person.list_name, reason=person.reason, file_names=[name for name, _ in photos])
    return await _faces_page(request, message=t("watchlist.face_added", name=person.name))


@require_role("admin")
async def remove_face(request: web.Request) -> web.Response:
    person_id = path_id(request, "person_id")
    watchlist = FaceWatchlist(request.app[WATCHLIST_KEY])
    removed = await asyncio.to_thread(watchlist.remove_person, person_id, _actor(request))
    if removed:
        audit_request(request, "watchlist_face_remove", person_id=person_id)
    raise web.HTTPSeeOther("/watchlists/faces")


def add_watchlist_routes(app: web.Application) -> None:
    config = app[CONFIG_KEY]
    app[ENROLLER_KEY] = FaceEnroller(config.face_enrol.detector, config.face_enrol.embedder)
    app.router.add_get("/watchlists/plates", plates_page)
    app.router.add_post("/watchlists/plates", add_plate)
    app.router.add_post("/watchlists/plates/import", import_plates)
    app.router.add_post("/watchlists/plates/lists/remove", remove_plate_list)
    app.router.add_post(r"/watchlists/plates/{entry_id:\d+}/remove", remove_plate)
    app.router.add_get("/watchlists/faces", faces_page)
    app.router.add_post("/watchlists/faces", add_face)
    app.router.add_post(r"/watchlists/faces/{person_id:\d+}/remove", remove_face)
    app.router.add_get(r"/watchlists/faces/photos/{photo_id:\d+}.jpg", face_photo)
