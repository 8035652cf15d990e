"""HTTP API from which daemons pull the watchlists: plate entries, and face embeddings for one model.

Both routes need `Authorization: Bearer TOKEN` with a token from the web config's api_tokens, and
return 304 for a matching If-None-Match. The ETag follows the store version, which every watchlist
change increments. Responses carry embeddings only, never the enrolment photos.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from edge.watchlist.faces import FaceExport, FaceWatchlist
from edge.watchlist.store import MAX_TEXT_LENGTH, WatchlistStore

log = logging.getLogger(__name__)

PLATES_PATH = "/api/v1/watchlists/plates"
FACES_PATH = "/api/v1/watchlists/faces"
ETAG_ANY = "*"


@dataclass(frozen=True)
class WatchlistApi:
    """The store the API reads and the tokens it accepts."""

    store: WatchlistStore
    tokens: tuple[bytes, ...]


WATCHLIST_API_KEY = web.AppKey("watchlist_api", WatchlistApi)


def add_watchlist_api_routes(app: web.Application, store: WatchlistStore, tokens: list[str]) -> None:
    """Add GET PLATES_PATH and GET FACES_PATH to `app`; with no tokens both return 404 saying the API is off."""
    app[WATCHLIST_API_KEY] = WatchlistApi(store, tuple(token.encode("utf-8") for token in tokens))
    app.router.add_get(PLATES_PATH, get_plates)
    app.router.add_get(FACES_PATH, get_faces)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _check_token(request: web.Request, api: WatchlistApi) -> web.Response | None:
    """Return an error response unless the request carries one of the configured tokens."""
    if not api.tokens:
        return _error(404, "the watchlist API is off because the web service has no api_tokens; add a token of "
                           "at least 32 characters to api_tokens in its config and restart it")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented_bytes = presented.strip().encode("utf-8")
    # Every token is compared in constant time, and none is skipped, so the timing shows neither which
    # token nor how much of one matched.
    valid = False
    for token in api.tokens:
        valid |= hmac.compare_digest(presented_bytes, token)
    if scheme.lower() == "bearer" and valid:
        return None
    log.warning("watchlist API request from %s to %s rejected: %s", request.remote, request.path,
                "no bearer token" if not presented else "unknown token")
    return _error(401, "missing or invalid API token; send 'Authorization: Bearer TOKEN' with a token from "
                       "api_tokens in the web service config",
                  headers={"WWW-Authenticate": 'Bearer realm="edge-watchlists"'})


def _not_modified(request: web.Request, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110, section 13.1.2), so a W/ prefix still matches.
    conditions = request.if_none_match or ()
    return any(condition.value in (etag, ETAG_ANY) for condition in conditions)


def _versioned(request: web.Request, etag: str, body: dict | None) -> web.Response:
    # no-cache: a cache may store the response but must ask again each time, so daemons see every change.
    headers = {"Cache-Control": "private, no-cache"}
    if body is None:
        response = web.Response(status=304, headers=headers)
    else:
        response = web.json_response(body, headers=headers)
    response.etag = etag
    return response


async def get_plates(request: web.Request) -> web.Response:
    """Return every plate entry with the store version."""
    api = request.app[WATCHLIST_API_KEY]
    rejected = _check_token(request, api)
    if rejected is not None:
        return rejected
    version = await asyncio.to_thread(api.store.version)
    if _not_modified(request, _plates_etag(version)):
        return _versioned(request, _plates_etag(version), None)
    version, entries = await asyncio.to_thread(api.store.load_snapshot)
    body = {
        "version": version,
        "plates": [{"id": entry.id, "pattern": entry.pattern, "list_name": entry.list_name, "reason": entry.reason,
                    "max_edits": entry.max_edits} for entry in entries],
    }
    return _versioned(request, _plates_etag(version), body)


async def get_faces(request: web.Request) -> web.Response:
    """Return every person with the embeddings of the model named by the `model` query parameter."""
    api = request.app[WATCHLIST_API_KEY]
    rejected = _check_token(request, api)
    if rejected is not None:
        return rejected
    model_id = request.query.get("model", "").strip()
    if not model_id or len(model_id) > MAX_TEXT_LENGTH:
        return _error(400, "missing or invalid query parameter 'model'; pass the embedder's model id, such as "
                           "?model=mobilefacenet_128d:0123456789ab as the daemon logs it")
    version = await asyncio.to_thread(api.store.version)
    if _not_modified(request, _faces_etag(version, model_id)):
        return _versioned(request, _faces_etag(version, model_id), None)

    export = await asyncio.to_thread(FaceWatchlist(api.store).export_embeddings, model_id)
    if not export.embeddings and export.photos_without_embedding:
        known = ", ".join(export.model_ids) or "none"
        return _error(409, f"the watchlist has no face embeddings for model {model_id!r} (model ids stored: "
                           f"{known}); run `edge watchlist faces reembed --embedder NAME` on the web service "
                           "host, or configure the daemon with a stored model")
    return _versioned(request, _faces_etag(export.version, model_id), _faces_body(export))


def _faces_body(export: FaceExport) -> dict:
    photos_by_person: dict[int, list[dict]] = {}
    for embedding in export.embeddings:
        vector = np.asarray(embedding.vector, dtype="<f4")
        photos_by_person.setdefault(embedding.person_id, []).append({
            "id": embedding.photo_id,
            "sha256": embedding.sha256,
            "dimension": int(vector.shape[0]),
            "embedding": base64.b64encode(vector.tobytes()).decode("ascii"),
        })
    return {
        "version": export.version,
        "model_id": export.model_id,
        "persons": [{"id": person.id, "name": person.name, "list_name": person.list_name, "reason": person.reason,
                     "photos": photos_by_person.get(person.id, [])} for person in export.persons],
        "photos_without_embedding": export.photos_without_embedding,
    }


def _plates_etag(version: int) -> str:
    return f"plates-{version}"


def _faces_etag(version: int, model_id: str) -> str:
    # The model id comes from the query string, so it is hashed to keep the ETag within the allowed characters.
    return f"faces-{version}-{hashlib.sha256(model_id.encode('utf-8')).hexdigest()[:16]}"
