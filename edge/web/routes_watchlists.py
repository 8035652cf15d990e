"""Admin page for the plate watchlist that the web service owns and daemons pull.

The face watchlist page is in edge.web.routes_faces.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import urllib.parse
from pathlib import Path

from aiohttp import web
from yarl import URL

from edge.watchlist.enrol import MAX_PHOTO_BYTES
from edge.watchlist.plates import (InvalidEntryError, PlateEntry, WatchlistError, check_pattern_can_match,
                                   normalise_pattern, validate_max_edits)
from edge.web.audit import audit_request
from edge.web.auth import USER_KEY
from edge.web.i18n import Translator
from edge.web.keys import WATCHLIST_KEY
from edge.web.render import page_number, path_id, query_non_negative_int, render, translator
from edge.web.security import require_role

log = logging.getLogger(__name__)

# The form around a photo adds a few fields; anything beyond this is rejected by aiohttp before it is read.
MAX_REQUEST_BYTES = MAX_PHOTO_BYTES + 64 * 1024
# Entries per page: a watchlist of 20,000 entries on one page was 8 MB of HTML and took seconds to load.
PLATE_PAGE_SIZE = 100
MAX_FILTER_CHARS = 64
# Messages shown after a redirect, named by the page's `notice` parameter.
PLATE_NOTICES = ("added", "removed", "list_removed", "not_found")
# Rejected CSV rows listed on the page after an import. The rest are only counted, because a file of
# 200,000 bad rows would otherwise produce a page of that many rows.
MAX_REJECTED_ROWS_SHOWN = 200
# List names named in the audit row of one import; a file may spread its rows over many lists.
MAX_AUDITED_LIST_NAMES = 20
# The letters that plates never contain, which a plate read replaces by the digits 1 and 0.
LETTERS_NOT_ON_PLATES = ("I", "O")


def web_actor(request: web.Request) -> str:
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

    context = {"message": _notice_text(request), "error": None, "error_detail": None, "rejected": [],
               "rejected_more": 0, "form": {}}
    context.update(messages)
    return render(request, "watchlist_plates.html", status=status, entries=entries, total=total, page=page,
                  pages=pages, page_link=page_link, filter_text=text, list_filter=list_filter,
                  lists=await asyncio.to_thread(store.plate_lists), **context)


def _notice_text(request: web.Request) -> str | None:
    """Return the message named by the `notice` parameter after a redirect, or None."""
    t = translator(request)
    notice = request.query.get("notice", "")
    if notice not in PLATE_NOTICES:
        return None
    if notice == "added":
        # Only a valid pattern is shown, so a crafted link cannot put its own text in the message.
        try:
            pattern = normalise_pattern(request.query.get("pattern", "")[:MAX_FILTER_CHARS])
        except WatchlistError:
            return None
        return t("watchlist.plate_added", pattern=pattern)
    count = query_non_negative_int(request, "count")
    if count is None:
        return None
    return t(f"watchlist.notice_{notice}", count=count)


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
                                        max_edits, web_actor(request))
    except WatchlistError as error:
        text, detail = invalid_entry_text(t, error)
        return await _plates_page(request, 400, error=text, error_detail=detail, form=form)
    audit_request(request, "watchlist_plate_add", entry_id=entry.id, pattern=entry.pattern,
                  list_name=entry.list_name, reason=entry.reason, max_edits=entry.max_edits)
    # A redirect, so that reloading the page does not post the form again.
    raise web.HTTPSeeOther(str(URL.build(path="/watchlists/plates",
                                         query={"notice": "added", "pattern": entry.pattern})))


async def _plate_form_error(request: web.Request, pattern: str, list_name: str, reason: str,
                           max_edits: int) -> str | None:
    """Return the page's message for a missing field, an impossible pattern or a duplicate, else None.

    Other invalid values reach the store, which rejects them with an English detail.
    """
    t = translator(request)
    missing = missing_fields_text(t, {"pattern": pattern, "list_name": list_name, "reason": reason})
    if missing is not None:
        return missing
    try:
        normalised = normalise_pattern(pattern)
    except WatchlistError:
        return None
    try:
        validate_max_edits(max_edits, normalised)
        check_pattern_can_match(normalised, max_edits)
    except InvalidEntryError as error:
        if not error.key:
            return None
        return entry_error_text(t, error.key, {**error.fields, "pattern": pattern.strip()}, normalised)
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
    entry = await asyncio.to_thread(request.app[WATCHLIST_KEY].remove_entry, entry_id, web_actor(request))
    if entry is not None:
        audit_request(request, "watchlist_plate_remove", entry_id=entry_id, pattern=entry.pattern,
                      list_name=entry.list_name, reason=entry.reason, max_edits=entry.max_edits)
    raise _after_removal("removed" if entry is not None else "not_found", int(entry is not None))


@require_role("admin")
async def remove_plate_list(request: web.Request) -> web.Response:
    list_name = str((await request.post()).get("list_name", "")).strip()
    removed = 0
    if list_name:
        removed = await asyncio.to_thread(request.app[WATCHLIST_KEY].remove_list, list_name, web_actor(request))
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
            report = await asyncio.to_thread(request.app[WATCHLIST_KEY].import_plates_csv, path, web_actor(request))
        except WatchlistError as error:
            # The English detail names the temporary file, so it is replaced by the name of the uploaded file.
            detail = import_error_text(t, error, file_name) or str(error).replace(str(path), file_name)
            return await _plates_page(request, 400, error=t("watchlist.import_failed"), error_detail=detail)
    audit_request(request, "watchlist_plate_import", file_name=upload.filename, sha256=report.sha256,
                  loaded=len(report.loaded), rejected=len(report.rejected), **import_summary(report.loaded))
    message = t("watchlist.imported", loaded=len(report.loaded), rejected=len(report.rejected))
    listed_rows = [(row.line, entry_error_text(t, row.key, row.fields) if row.key else row.message)
                   for row in report.rejected[:MAX_REJECTED_ROWS_SHOWN]]
    return await _plates_page(request, message=message, rejected=listed_rows,
                              rejected_more=len(report.rejected) - len(listed_rows),
                              message_class="warning" if report.rejected else "message")


@require_role("admin")
async def import_too_large_page(request: web.Request) -> web.Response:
    """Render the plates page with the 413 message for an import over MAX_REQUEST_BYTES, which was not read."""
    return await _plates_page(request, 413, error=translator(request)("error.too_large"))


def import_error_text(t: Translator, error: WatchlistError, file_name: str) -> str | None:
    """Return the page's text for an import of `file_name` that failed as a whole, or None without a key."""
    key = getattr(error, "key", "")
    if key != "import_bad_header":
        return t(f"watchlist.{key}", file_name=file_name, **error.fields) if key else None
    problems = [t(f"watchlist.import_header_{part}", names=error.fields[part])
                for part in ("missing", "unknown", "repeated") if error.fields[part]]
    return t("watchlist.import_bad_header", file_name=file_name,
             problems=t("watchlist.problem_separator").join(problems), columns=error.fields["columns"])


def import_summary(loaded: list[PlateEntry]) -> dict:
    """Return the lists and the entry id range of an import, bounded in size, for its audit row.

    Imports add entries with consecutive ids, so the range leads from the audit row to the entries.
    """
    if not loaded:
        return {}
    list_names = sorted({entry.list_name for entry in loaded})
    ids = [entry.id for entry in loaded]
    summary = {"list_names": list_names[:MAX_AUDITED_LIST_NAMES], "entry_ids": f"{min(ids)}-{max(ids)}"}
    if len(list_names) > MAX_AUDITED_LIST_NAMES:
        summary["more_lists"] = len(list_names) - MAX_AUDITED_LIST_NAMES
    return summary


def missing_fields_text(t: Translator, fields: dict[str, str]) -> str | None:
    """Return the page's message naming the empty or blank `fields`, keyed by their label keys, else None."""
    missing = [key for key, value in fields.items() if not value.strip()]
    if not missing:
        return None
    labels = t("watchlist.field_separator").join(t(f"watchlist.{key}") for key in missing)
    return t("watchlist.fields_missing", fields=labels)


def invalid_entry_text(t: Translator, error: WatchlistError) -> tuple[str, str | None]:
    """Return the page's message for a change that the watchlist rejected, and an English detail or None.

    Errors with a catalogue key are shown in the page's language. The English message of the others is
    shown as the detail under a general message, so that the user still learns what to fix.
    """
    if isinstance(error, InvalidEntryError) and error.key:
        return entry_error_text(t, error.key, error.fields), None
    return t("watchlist.invalid_entry"), str(error)


def entry_error_text(t: Translator, key: str, fields: dict, normalised: str | None = None) -> str:
    """Return the page's text for the watchlist error `key` with its `fields`.

    A pattern that the plate grammar corrects (`pattern_published_as`) also gets the 1-based positions
    that the correction changes. They are found by comparing the normalised pattern, `normalised` or else
    fields["pattern"], with fields["published_as"], because a correction replaces one character by
    another. The letters I and O are mentioned only when the pattern contains one of them.
    """
    if key != "pattern_published_as":
        return t(f"watchlist.{key}", **fields)
    typed = normalised if normalised is not None else str(fields.get("pattern", ""))
    published_as = str(fields.get("published_as", ""))
    changed = [str(index + 1) for index, (before, after) in enumerate(zip(typed, published_as)) if before != after]
    if any(letter in typed for letter in LETTERS_NOT_ON_PLATES):
        key = "pattern_published_as_letters"
    return t(f"watchlist.{key}", **fields, positions=t("watchlist.field_separator").join(changed))


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


def add_watchlist_routes(app: web.Application) -> None:
    app.router.add_get("/watchlists/plates", plates_page)
    app.router.add_post("/watchlists/plates", add_plate)
    app.router.add_post("/watchlists/plates/import", import_plates)
    app.router.add_post("/watchlists/plates/lists/remove", remove_plate_list)
    app.router.add_post(r"/watchlists/plates/{entry_id:\d+}/remove", remove_plate)
