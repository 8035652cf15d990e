"""Admin page for the face watchlist: enrolment from uploaded photos, removal, and the enrolled photos."""

from __future__ import annotations

import asyncio
import logging
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
from edge.models.manifest import AssetError, ModelEntry, find_file, load_manifest, model_dirs, resolve_file
from edge.watchlist.enrol import MAX_PHOTO_BYTES, MAX_PHOTO_PIXELS, PhotoRejected, check_and_embed_photo
from edge.watchlist.faces import DifferentFacesError, DuplicateFaceError, FaceWatchlist
from edge.watchlist.plates import WatchlistError
from edge.web.audit import audit_request
from edge.web.keys import CONFIG_KEY, WATCHLIST_KEY
from edge.web.render import path_id, query_non_negative_int, render, request_language, translator
from edge.web.routes_watchlists import invalid_entry_text, missing_fields_text, web_actor
from edge.web.security import require_role

log = logging.getLogger(__name__)

# Enrolled photos are served scaled to at most this many pixels on the longer side, for thumbnails and
# for the comparison beside a face hit. The stored photo may be up to MAX_PHOTO_PIXELS.
PHOTO_VIEW_MAX_SIDE = 320
# Messages shown after a redirect, named by the page's `notice` parameter.
FACE_NOTICES = ("added", "removed", "not_found")


class FaceEnroller:
    """The face models that check uploaded photos, loaded on the first upload and then kept."""

    def __init__(self, detector_name: str, embedder_name: str):
        self.detector_name = detector_name
        self.embedder_name = embedder_name
        self._models: tuple[FaceAnalyzer, FaceEmbedder] | None = None

    def models(self) -> tuple[FaceAnalyzer, FaceEmbedder]:
        """Return the loaded models; raise EnrolmentModelError when a model file is missing or corrupt."""
        if self._models is None:
            detector_entry, detector_path = self._resolve(self.detector_name)
            embedder_entry, embedder_path = self._resolve(self.embedder_name)
            detector = FaceDetector(detector_entry, detector_path, ["cpu"])
            embedder = FaceEmbedder(embedder_entry, embedder_path, ["cpu"])
            self._models = FaceAnalyzer(detector, embedder, QualityGate()), embedder
        return self._models

    @staticmethod
    def _resolve(model_name: str) -> tuple[ModelEntry, Path]:
        try:
            entry = load_manifest().model(model_name)
            return entry, resolve_file(entry, model_dirs())
        except AssetError as error:
            raise EnrolmentModelError(model_name, str(error)) from error

    def missing_models(self) -> list[str]:
        """Return the names of the enrolment models whose files are not found, without loading or hashing them."""
        missing = []
        for model_name in (self.detector_name, self.embedder_name):
            try:
                entry = load_manifest().model(model_name)
            except AssetError:
                missing.append(model_name)
                continue
            if find_file(entry.file, entry.task, model_dirs()) is None:
                missing.append(model_name)
        return missing

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


class EnrolmentModelError(Exception):
    """A face model that enrolment needs is missing, corrupt or not in the manifest."""

    def __init__(self, model_name: str, detail: str):
        super().__init__(detail)
        self.model_name = model_name


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
    context = {"message": await _notice_text(request, watchlist), "error": None, "error_detail": None, "form": {}}
    context.update(messages)
    return render(request, "watchlist_faces.html", status=status, persons=persons, photo_ids=photo_ids,
                  max_photo_mb=MAX_PHOTO_BYTES >> 20, **context)


async def _notice_text(request: web.Request, watchlist: FaceWatchlist) -> str | None:
    """Return the message named by the `notice` parameter after a redirect, or None.

    The added person's name is read from the watchlist by id, so a crafted link cannot put its own
    text in the message.
    """
    notice = request.query.get("notice", "")
    if notice not in FACE_NOTICES:
        return None
    t = translator(request)
    person_id = query_non_negative_int(request, "person")
    if person_id is None:
        return None
    if notice == "added":
        person = await asyncio.to_thread(watchlist.person, person_id)
        return t("watchlist.face_added", name=person.name) if person is not None else None
    return t(f"watchlist.face_notice_{notice}", person_id=person_id)


def _faces_redirect(notice: str, person_id: int) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(str(URL.build(path="/watchlists/faces",
                                          query={"notice": notice, "person": person_id})))


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
    missing = missing_fields_text(t, {"person_name": form.get("name", ""), "list_name": form.get("list_name", ""),
                                      "reason": form.get("reason", "")})
    if missing is not None:
        return await _faces_page(request, 400, error=missing, form=form)

    photos = [(urllib.parse.unquote(upload.filename or "photo"), upload.file.read()) for upload in uploads]
    watchlist = FaceWatchlist(request.app[WATCHLIST_KEY])
    try:
        person = await asyncio.to_thread(
            request.app[ENROLLER_KEY].enrol, watchlist, str(form.get("name", "")), str(form.get("list_name", "")),
            str(form.get("reason", "")), photos, web_actor(request))
    except PhotoFileRejected as failed:
        rejected = failed.rejected
        log.info("face photo %r rejected: %s", failed.file_name, rejected.detail)
        checks = t("watchlist.field_separator").join(t(f"watchlist.quality_{check}") for check in rejected.checks)
        problem = t(f"watchlist.photo_{rejected.reason_code}", limit_mb=MAX_PHOTO_BYTES >> 20,
                    megapixels=MAX_PHOTO_PIXELS // 1_000_000, checks=checks)
        # The problem texts leave out the outcome, so that the message states it once.
        if len(photos) > 1:
            error = t("watchlist.photo_of_several", file_name=failed.file_name, problem=problem)
        else:
            error = t("watchlist.photo_rejected", problem=problem)
        # The detail is an English sentence with the measured values, so the Chinese page leaves it out.
        detail = rejected.detail if request_language(request) == "en" else None
        return await _faces_page(request, 400, error=error, error_detail=detail, form=form)
    except DifferentFacesError as different:
        error = t("watchlist.photos_differ", first=photos[different.first_photo - 1][0],
                  second=photos[different.second_photo - 1][0], similarity=f"{different.similarity:.2f}",
                  threshold=f"{different.threshold:.2f}")
        return await _faces_page(request, 400, error=error, form=form)
    except DuplicateFaceError as duplicate:
        error = t("watchlist.face_already_enrolled", person_id=duplicate.person_id, name=duplicate.name,
                  list_name=duplicate.list_name)
        return await _faces_page(request, 400, error=error, form=form)
    except WatchlistError as error:
        text, detail = invalid_entry_text(t, error)
        return await _faces_page(request, 400, error=text, error_detail=detail, form=form)
    except EnrolmentModelError as error:
        log.error("face enrolment failed: model %s cannot be loaded: %s", error.model_name, error)
        return await _faces_page(request, 503, error=t("watchlist.enrol_model_missing", model=error.model_name),
                                 error_detail=str(error), form=form)

    audit_request(request, "watchlist_face_add", person_id=person.id, name=person.name,
                  list_name=person.list_name, reason=person.reason, file_names=[name for name, _ in photos])
    # A redirect, so that reloading the page does not upload the photos again.
    raise _faces_redirect("added", person.id)


@require_role("admin")
async def add_face_too_large_page(request: web.Request) -> web.Response:
    """Render the faces page with the 413 message for photos over MAX_REQUEST_BYTES, which were not read."""
    return await _faces_page(request, 413, error=translator(request)("error.too_large"))


@require_role("admin")
async def remove_face(request: web.Request) -> web.Response:
    person_id = path_id(request, "person_id")
    watchlist = FaceWatchlist(request.app[WATCHLIST_KEY])
    # Read before the removal, so that the audit row names whom the removal took off the watchlist.
    person = await asyncio.to_thread(watchlist.person, person_id)
    removed = await asyncio.to_thread(watchlist.remove_person, person_id, web_actor(request))
    if removed:
        names = {"name": person.name, "list_name": person.list_name, "reason": person.reason} if person else {}
        audit_request(request, "watchlist_face_remove", person_id=person_id, **names)
    raise _faces_redirect("removed" if removed else "not_found", person_id)


async def _warn_if_models_missing(app: web.Application) -> None:
    """Log a warning at start-up when an enrolment model file is not found, before the first upload fails."""
    enroller = app[ENROLLER_KEY]
    missing = await asyncio.to_thread(enroller.missing_models)
    if missing:
        folders = ", ".join(str(folder) for folder in model_dirs())
        log.warning("face enrolment models %s not found in %s; photo uploads on the faces page will fail until "
                    "EDGE_MODEL_DIR names the model folder or `edge models fetch %s` downloads them",
                    ", ".join(missing), folders, " ".join(missing))


def add_face_routes(app: web.Application) -> None:
    config = app[CONFIG_KEY]
    app[ENROLLER_KEY] = FaceEnroller(config.face_enrol.detector, config.face_enrol.embedder)
    app.on_startup.append(_warn_if_models_missing)
    app.router.add_get("/watchlists/faces", faces_page)
    app.router.add_post("/watchlists/faces", add_face)
    app.router.add_post(r"/watchlists/faces/{person_id:\d+}/remove", remove_face)
    app.router.add_get(r"/watchlists/faces/photos/{photo_id:\d+}.jpg", face_photo)
