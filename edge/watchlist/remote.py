"""Daemon side of watchlist distribution: pull the web service's watchlists into the local store.

WatchlistPuller polls the plate and face routes of edge.web.watchlist_api with If-None-Match. A new
list replaces the local store's plates and faces in one transaction with one audit row, which
increments the store version, so PlateWatchlistReloader and FaceGalleryReloader load it within their
poll interval. When the service is down or sends something invalid, the local store keeps the last
good lists, so the daemon keeps matching against them.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import re
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.watchlist.faces import FacePerson, FaceWatchlist, PhotoEmbedding
from edge.watchlist.plates import InvalidEntryError, PlateEntry, WatchlistError
from edge.watchlist.store import WatchlistStore, utc_now, validate_entry, validate_text

log = logging.getLogger(__name__)

PLATES_PATH = "/api/v1/watchlists/plates"
FACES_PATH = "/api/v1/watchlists/faces"
# A response larger than this is rejected unread. 10,000 persons with 3 photos of 512 numbers each
# come to about 85 MB of JSON, so this leaves room without letting a broken server fill the memory.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 2048
# Embedders in use have 128 or 512 dimensions; the bound only stops absurd payloads.
MAX_EMBEDDING_DIMENSION = 4096
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class WatchlistSourceError(WatchlistError):
    """The watchlist source is misconfigured: a bad URL, or a token file that is missing or empty."""


class InvalidPayloadError(WatchlistError):
    """A response of the web service is not a valid watchlist; the message names the entry and the problem."""


class PullError(Exception):
    """One poll failed; the message names the URL (without credentials) and the cause."""


@dataclass(frozen=True)
class _Fetched:
    etag: str | None
    body: dict


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would send the Authorization header on to wherever a redirect points, possibly another host.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} not followed; set the watchlist "
                                                         "source url to the final address", headers, fp)


def read_token_file(path: Path) -> str:
    """Return the API token stored in `path`, or raise WatchlistSourceError."""
    try:
        token = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as error:
        raise WatchlistSourceError(f"cannot read the watchlist API token file {path}: {error}; create it with the "
                                   "token from the web service's api_tokens, readable by this user only") from None
    if not token or any(character.isspace() for character in token):
        raise WatchlistSourceError(f"watchlist API token file {path} must contain one token with no spaces, "
                                   "as set in the web service's api_tokens")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("watchlist API token file %s can be read by other users (mode %o); run chmod 600 on it",
                    path, stat.S_IMODE(mode))
    return token


class WatchlistPuller:
    """A background thread that keeps `store` equal to the watchlists of the web service at `base_url`.

    `face_model_id` selects the embeddings to pull; with None only the plates are pulled and the local
    face tables stay as they are.
    """

    def __init__(self, base_url: str, token: str, store: WatchlistStore, face_model_id: str | None,
                 interval_s: float = 10, timeout_s: float = 5):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WatchlistSourceError(f"invalid watchlist source url {base_url!r}: expected "
                                       "http://HOST[:PORT] or https://HOST[:PORT] of the web service")
        if parts.username is not None or parts.password is not None:
            raise WatchlistSourceError("the watchlist source url must not contain credentials; put the token in "
                                       "token_file")
        if not token or any(character.isspace() for character in token):
            raise WatchlistSourceError("the watchlist API token is empty or contains spaces")
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError(f"interval_s and timeout_s must be above 0, got {interval_s} and {timeout_s}")
        self._base_url = base_url.rstrip("/")
        self._token = token
        self.store = store
        self.face_model_id = face_model_id
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.actor = f"remote:{parts.netloc}"
        self.plates_url = self._base_url + PLATES_PATH
        self.faces_url = (self._base_url + FACES_PATH + "?" + urllib.parse.urlencode({"model": face_model_id})
                          if face_model_id else None)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)
        self._etags: dict[str, str | None] = {"plates": None, "faces": None}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.updates = 0
        self.errors = 0
        self.last_success_at: str | None = None
        self.last_error: str | None = None
        self.remote_version: int | None = None
        self._outage_started: float | None = None
        self._outage_errors = 0

    def start(self) -> None:
        """Start polling in a daemon thread; the first poll runs at once."""
        if self._thread is not None:
            raise RuntimeError("WatchlistPuller.start() called twice")
        log.info("pulling watchlists from %s every %g s%s", self._base_url, self.interval_s,
                 f", face embeddings of {self.face_model_id}" if self.face_model_id else ", plates only")
        self._thread = threading.Thread(target=self._run, name="watchlist-puller", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float | None = None) -> bool:
        """Stop polling and wait for the thread; return False if it was still in a request after `timeout_s`.

        The default wait covers one poll: two requests of up to `timeout_s` each, plus a margin.
        """
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(2 * self.timeout_s + 1 if timeout_s is None else timeout_s)
        if self._thread.is_alive():
            log.warning("watchlist puller still in a request to %s; leaving it to end with the process",
                        self._base_url)
            return False
        return True

    def status(self) -> dict:
        """Return the counters for the health message."""
        with self._lock:
            return {
                "url": self._base_url,
                "polls": self.polls,
                "updates": self.updates,
                "errors": self.errors,
                "last_success_at": self.last_success_at,
                "last_error": self.last_error,
                "remote_version": self.remote_version,
                "failing": self._outage_started is not None,
            }

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)

    def poll_once(self) -> bool:
        """Fetch both lists once and apply any change; return whether the local store changed.

        Connection, HTTP, payload and local store errors are counted and logged once per outage instead of
        raised, so the local lists stay in use.
        """
        with self._lock:
            self.polls += 1
        # Both responses are validated before anything is written, so a bad face list also keeps the old plates.
        now = utc_now()
        url = self.plates_url
        try:
            plates = self._fetch(url, "plates")
            plate_entries = parse_plates(plates.body, now, self.actor) if plates else None
            faces, face_lists = None, None
            if self.faces_url is not None:
                url = self.faces_url
                faces = self._fetch(url, "faces")
                face_lists = parse_faces(faces.body, self.face_model_id, now, self.actor) if faces else None
            url = self._base_url
            changed = self._apply(plates, plate_entries, faces, face_lists)
        except (PullError, InvalidPayloadError, WatchlistError) as error:
            self._record_error(url, error)
            return False
        self._record_success()
        return changed

    def _fetch(self, url: str, kind: str) -> _Fetched | None:
        """Return the new body of one route, or None when it returned 304 Not Modified."""
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._token}",
                                                       "Accept": "application/json"})
        if self._etags[kind]:
            request.add_header("If-None-Match", self._etags[kind])
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                data = response.read(MAX_RESPONSE_BYTES + 1)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as error:
            with error:
                if error.code == 304:
                    return None
                raise PullError(f"{url} returned HTTP {error.code}: {_error_message(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            raise PullError(f"{url} cannot be reached: {reason}") from None
        except http.client.HTTPException as error:
            # For example a connection closed in the middle of the body (IncompleteRead).
            raise PullError(f"{url} returned an invalid HTTP response: {error!r}") from None
        if len(data) > MAX_RESPONSE_BYTES:
            raise PullError(f"{url} returned more than {MAX_RESPONSE_BYTES // (1024 * 1024)} MiB")
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidPayloadError(f"{url} returned invalid JSON: {error}") from None
        if not isinstance(body, dict):
            raise InvalidPayloadError(f"{url} returned JSON {type(body).__name__}, expected an object")
        return _Fetched(etag, body)

    def _apply(self, plates: _Fetched | None, plate_entries: list[PlateEntry] | None, faces: _Fetched | None,
               face_lists: tuple[list[FacePerson], list[PhotoEmbedding]] | None) -> bool:
        changed_parts = {}
        with self.store.transaction(write=True) as connection:
            if plate_entries is not None and self.store.replace_plate_entries(connection, plate_entries):
                changed_parts["plates"] = len(plate_entries)
            if face_lists is not None:
                persons, embeddings = face_lists
                if FaceWatchlist(self.store).replace_all(connection, persons, embeddings, self.face_model_id):
                    changed_parts["persons"] = len(persons)
                    changed_parts["photos"] = len(embeddings)
            if changed_parts:
                # Like every face change, the audit row names no embedding.
                self.store.append_audit(connection, self.actor, "watchlist.sync", {
                    "source": self._base_url,
                    "remote_version": _remote_version(plates, faces),
                    "model_id": self.face_model_id if face_lists is not None else None,
                    **changed_parts,
                })
        # The ETags are kept only after the lists are stored, so a failed write is fetched again.
        for kind, fetched in (("plates", plates), ("faces", faces)):
            if fetched is not None:
                self._etags[kind] = fetched.etag
        with self._lock:
            version = _remote_version(plates, faces)
            if version is not None:
                self.remote_version = version
            if changed_parts:
                self.updates += 1
        if changed_parts:
            log.info("watchlists updated from %s (version %s): %s", self._base_url, self.remote_version,
                     ", ".join(f"{count} {part}" for part, count in changed_parts.items()))
        return bool(changed_parts)

    def _record_error(self, url: str, error: Exception) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = str(error)
            first = self._outage_started is None
            if first:
                self._outage_started = time.monotonic()
            self._outage_errors += 1
        if first:
            log.warning("watchlist pull from %s failed, keeping the local lists until it works again: %s", url,
                        error)
        else:
            log.debug("watchlist pull from %s failed again: %s", url, error)

    def _record_success(self) -> None:
        with self._lock:
            self.last_success_at = utc_now()
            outage_started, failed = self._outage_started, self._outage_errors
            self._outage_started, self._outage_errors = None, 0
        if outage_started is not None:
            log.info("watchlist pull from %s works again after %d failed polls in %.0f s", self._base_url,
                     failed, time.monotonic() - outage_started)


def _remote_version(*fetched: _Fetched | None) -> int | None:
    versions = [item.body.get("version") for item in fetched if item is not None]
    return max((version for version in versions if isinstance(version, int)), default=None)


def _error_message(error: urllib.error.HTTPError) -> str:
    # The web service puts a sentence in {"error": ...}; anything else is cut short.
    try:
        body = error.read(MAX_ERROR_BODY_BYTES)
    except OSError:
        return str(error.reason)
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    if isinstance(message, str):
        return message[:500]
    return str(error.reason)


def parse_plates(body: dict, created_at: str, actor: str) -> list[PlateEntry]:
    """Return the validated plate entries of a plates response, or raise InvalidPayloadError for the first bad one."""
    _check_version(body)
    items = body.get("plates")
    if not isinstance(items, list):
        raise InvalidPayloadError(f"'plates' is {type(items).__name__}, expected a list of entries")
    entries, seen_ids, seen_keys = [], set(), {}
    for index, item in enumerate(items):
        where = f"plates[{index}]"
        if not isinstance(item, dict):
            raise InvalidPayloadError(f"{where} is {type(item).__name__}, expected an object")
        entry_id = _positive_id(item.get("id"), where)
        where = f"plates[{index}] (id {entry_id})"
        if entry_id in seen_ids:
            raise InvalidPayloadError(f"{where}: the id appears more than once")
        seen_ids.add(entry_id)
        try:
            pattern, reason, list_name, max_edits = validate_entry(
                item.get("pattern"), item.get("reason"), item.get("list_name"), item.get("max_edits"))
        except InvalidEntryError as error:
            raise InvalidPayloadError(f"{where}: {error}") from None
        if (pattern, list_name) in seen_keys:
            raise InvalidPayloadError(f"{where}: pattern '{pattern}' on list '{list_name}' repeats entry "
                                      f"{seen_keys[pattern, list_name]}")
        seen_keys[pattern, list_name] = entry_id
        entries.append(PlateEntry(entry_id, pattern, max_edits, reason, list_name, created_at, actor))
    return entries


def parse_faces(body: dict, model_id: str, created_at: str, actor: str
                ) -> tuple[list[FacePerson], list[PhotoEmbedding]]:
    """Return the validated persons and embeddings of a faces response, or raise InvalidPayloadError."""
    _check_version(body)
    if body.get("model_id") != model_id:
        raise InvalidPayloadError(f"the response contains embeddings of model {body.get('model_id')!r}, but "
                                  f"{model_id!r} was requested")
    items = body.get("persons")
    if not isinstance(items, list):
        raise InvalidPayloadError(f"'persons' is {type(items).__name__}, expected a list of persons")
    persons, embeddings, person_ids, photo_ids = [], [], set(), set()
    dimension = None
    for index, item in enumerate(items):
        where = f"persons[{index}]"
        if not isinstance(item, dict):
            raise InvalidPayloadError(f"{where} is {type(item).__name__}, expected an object")
        person_id = _positive_id(item.get("id"), where)
        where = f"persons[{index}] (id {person_id})"
        if person_id in person_ids:
            raise InvalidPayloadError(f"{where}: the id appears more than once")
        person_ids.add(person_id)
        try:
            name = validate_text("name", item.get("name"), "the web service sent an invalid person")
            list_name = validate_text("list name", item.get("list_name"), "the web service sent an invalid person")
            reason = validate_text("reason", item.get("reason"), "the web service sent an invalid person")
        except InvalidEntryError as error:
            raise InvalidPayloadError(f"{where}: {error}") from None
        photos = item.get("photos")
        if not isinstance(photos, list):
            raise InvalidPayloadError(f"{where}: 'photos' is {type(photos).__name__}, expected a list")
        for photo_index, photo in enumerate(photos):
            embedding = _parse_photo(photo, f"{where} photos[{photo_index}]", person_id)
            if embedding.photo_id in photo_ids:
                raise InvalidPayloadError(f"{where} photos[{photo_index}]: photo id {embedding.photo_id} appears "
                                          "more than once")
            photo_ids.add(embedding.photo_id)
            if dimension is not None and embedding.vector.shape[0] != dimension:
                raise InvalidPayloadError(f"{where} photos[{photo_index}]: dimension {embedding.vector.shape[0]}, "
                                          f"but earlier photos have {dimension}")
            dimension = embedding.vector.shape[0]
            embeddings.append(embedding)
        persons.append(FacePerson(person_id, name, list_name, reason, created_at, actor, len(photos)))
    return persons, embeddings


def _parse_photo(photo: object, where: str, person_id: int) -> PhotoEmbedding:
    if not isinstance(photo, dict):
        raise InvalidPayloadError(f"{where} is {type(photo).__name__}, expected an object")
    photo_id = _positive_id(photo.get("id"), where)
    sha256 = photo.get("sha256")
    if not isinstance(sha256, str) or not SHA256_HEX.match(sha256):
        raise InvalidPayloadError(f"{where}: invalid sha256 {sha256!r}, expected 64 lower-case hex digits")
    dimension = photo.get("dimension")
    if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_EMBEDDING_DIMENSION:
        raise InvalidPayloadError(f"{where}: invalid dimension {dimension!r}, expected 1 to {MAX_EMBEDDING_DIMENSION}")
    encoded = photo.get("embedding")
    try:
        raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
    except binascii.Error:
        raw = None
    if raw is None:
        raise InvalidPayloadError(f"{where}: 'embedding' is not base64 text")
    if len(raw) != 4 * dimension:
        raise InvalidPayloadError(f"{where}: embedding has {len(raw)} bytes, expected {4 * dimension} for "
                                  f"{dimension} float32 numbers")
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.isfinite(vector).all():
        raise InvalidPayloadError(f"{where}: embedding contains NaN or infinite numbers")
    return PhotoEmbedding(photo_id, person_id, sha256, vector)


def _positive_id(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidPayloadError(f"{where}: invalid id {value!r}, expected a whole number of 1 or more")
    return value


def _check_version(body: dict) -> None:
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidPayloadError(f"invalid 'version' {version!r}, expected a whole number of 0 or more")
