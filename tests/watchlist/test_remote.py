"""WatchlistPuller against a real aiohttp server on 127.0.0.1 that serves the watchlist API over a real store."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading

import numpy as np
import pytest
from aiohttp import web

from edge.config.site import WatchlistSourceConfig
from edge.watchlist import store as store_module
from edge.watchlist.faces import FaceWatchlist
from edge.watchlist.plates import PlateWatchlistReloader
from edge.watchlist.remote import WatchlistPuller, WatchlistSourceError, read_token_file
from edge.watchlist.store import WatchlistStore
from edge.web.watchlist_api import PLATES_PATH, add_watchlist_api_routes
from tests.conftest import free_port, wait_until

TOKEN = "daemon-token-0123456789abcdef-0123456789"
MODEL_ID = "mobilefacenet_128d:0123456789ab"


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


class ApiServer:
    """The watchlist API on 127.0.0.1 in its own thread and event loop, restartable on the same port.

    `overrides` maps a path to a JSON body served in place of the real route, for malformed payloads.
    `statuses` records the status of every response.
    """

    def __init__(self, store: WatchlistStore, tokens: list[str]):
        self.store = store
        self.tokens = tokens
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.overrides: dict[str, object] = {}
        self.statuses: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the test API server did not start within 10 s"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        assert not self._thread.is_alive()

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        if request.path in self.overrides:
            response = web.json_response(self.overrides[request.path])
        else:
            response = await handler(request)
        self.statuses.append(response.status)
        return response

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(middlewares=[self._middleware])
        add_watchlist_api_routes(app, self.store, self.tokens)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start())
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()


@pytest.fixture
def server_store(tmp_path) -> WatchlistStore:
    store = WatchlistStore(tmp_path / "server.sqlite")
    store.add_plate("苏B*123", "case 2026-118", "stolen-vehicles", actor="admin")
    store.add_plate("苏ED51712", "missing person's car", "missing", max_edits=1, actor="admin")
    FaceWatchlist(store).add_person("张三", "wanted", "case 2026-207",
                                    [(b"jpeg-1", unit(1, 0, 0)), (b"jpeg-2", unit(0, 1, 0))], MODEL_ID, actor="admin")
    return store


@pytest.fixture
def server(server_store):
    server = ApiServer(server_store, [TOKEN])
    server.start()
    yield server
    if server._thread.is_alive():
        server.stop()


@pytest.fixture
def daemon_store(tmp_path) -> WatchlistStore:
    return WatchlistStore(tmp_path / "daemon.sqlite")


@pytest.fixture
def puller(server, daemon_store):
    puller = WatchlistPuller(server.url, TOKEN, daemon_store, MODEL_ID, interval_s=0.2, timeout_s=2)
    yield puller
    assert puller.close()


def plate_rows(store: WatchlistStore) -> list[tuple]:
    return [(entry.id, entry.pattern, entry.max_edits, entry.reason, entry.list_name) for entry in store.list_plates()]


def face_rows(store: WatchlistStore) -> list[tuple]:
    export = FaceWatchlist(store).export_embeddings(MODEL_ID)
    return [(person.id, person.name, person.list_name, person.reason) for person in export.persons] + \
        [(e.photo_id, e.person_id, e.sha256, e.vector.tobytes()) for e in export.embeddings]


def test_initial_sync_copies_lists(puller, server_store, daemon_store, server):
    assert puller.poll_once()

    assert plate_rows(daemon_store) == plate_rows(server_store)
    assert face_rows(daemon_store) == face_rows(server_store)
    _, gallery, missing = FaceWatchlist(daemon_store).load_gallery(MODEL_ID, threshold=0.5)
    assert len(gallery) == 1
    assert missing == 0
    assert gallery.match(unit(0, 1, 0.05)).person.name == "张三"
    assert all(photo.jpeg == b"" for photo in FaceWatchlist(daemon_store).photos())

    [record] = daemon_store.audit_log(10)
    assert record.action == "watchlist.sync"
    assert record.actor == f"remote:127.0.0.1:{server.port}"
    assert record.detail["remote_version"] == server_store.version()
    assert (record.detail["plates"], record.detail["persons"], record.detail["photos"]) == (2, 1, 2)

    status = puller.status()
    assert (status["polls"], status["updates"], status["errors"]) == (1, 1, 0)
    assert status["last_success_at"] is not None


def test_server_change_synced(puller, server_store, daemon_store):
    assert puller.poll_once()
    reloader = PlateWatchlistReloader(daemon_store, poll_interval_s=0)
    assert reloader.current().match("京A12345") == []

    server_store.add_plate("京A12345", "case 9", "stolen-vehicles", actor="admin")
    FaceWatchlist(server_store).remove_person(1, actor="admin")
    assert puller.poll_once()

    assert plate_rows(daemon_store) == plate_rows(server_store)
    assert FaceWatchlist(daemon_store).list_persons() == []
    assert reloader.refresh_if_changed()
    assert [match.entry.pattern for match in reloader.current().match("京A12345")] == ["京A12345"]
    assert puller.status()["updates"] == 2


def test_unchanged_server_answers_304(puller, daemon_store, server):
    assert puller.poll_once()
    version = daemon_store.version()
    server.statuses.clear()

    assert not puller.poll_once()

    assert server.statuses == [304, 304]
    assert daemon_store.version() == version
    assert len(daemon_store.audit_log(10)) == 1
    assert puller.status()["updates"] == 1


def test_restarted_puller_writes_nothing_when_equal(puller, server, daemon_store):
    """A daemon restart fetches everything again but adds no audit row when nothing changed."""
    assert puller.poll_once()
    version = daemon_store.version()
    fresh = WatchlistPuller(server.url, TOKEN, daemon_store, MODEL_ID, interval_s=1, timeout_s=2)

    assert not fresh.poll_once()

    assert fresh.status()["errors"] == 0
    assert daemon_store.version() == version
    assert len(daemon_store.audit_log(10)) == 1


def test_outage_keeps_lists_and_recovers(puller, server, server_store, daemon_store, caplog):
    assert puller.poll_once()
    expected = plate_rows(daemon_store)
    server.stop()

    with caplog.at_level(logging.INFO, logger="edge.watchlist.remote"):
        assert not puller.poll_once()
        assert not puller.poll_once()
        assert plate_rows(daemon_store) == expected
        assert len(face_rows(daemon_store)) == 3
        status = puller.status()
        assert (status["errors"], status["failing"]) == (2, True)
        assert "cannot be reached" in status["last_error"]

        server_store.add_plate("京A12345", "case 9", "stolen-vehicles", actor="admin")
        server.start()
        assert puller.poll_once()

    failures = [r for r in caplog.records if r.levelno == logging.WARNING and "failed" in r.getMessage()]
    assert len(failures) == 1
    assert f"http://127.0.0.1:{server.port}{PLATES_PATH}" in failures[0].getMessage()
    recoveries = [r for r in caplog.records if "works again after 2 failed polls" in r.getMessage()]
    assert len(recoveries) == 1
    assert plate_rows(daemon_store) == plate_rows(server_store)
    assert puller.status()["failing"] is False


def bad_plate(**changes) -> dict:
    entry = {"id": 9, "pattern": "京A12345", "list_name": "stolen", "reason": "case 9", "max_edits": 0}
    return {"version": 50, "plates": [entry, {**entry, "id": 10, "pattern": "京A54321", **changes}]}


MALFORMED_PLATES = [
    ("invalid pattern", bad_plate(pattern="京A1234!"), "plates[1] (id 10): invalid plate pattern"),
    ("max_edits out of range", bad_plate(max_edits=5), "plates[1] (id 10): invalid max_edits 5"),
    ("missing reason", bad_plate(reason=None), "plates[1] (id 10): invalid reason None"),
    ("repeated id", bad_plate(id=9), "plates[1] (id 9): the id appears more than once"),
    ("id as text", bad_plate(id="10"), "plates[1]: invalid id '10'"),
    ("no version", {"plates": []}, "invalid 'version' None"),
    ("plates not a list", {"version": 1, "plates": {}}, "'plates' is dict"),
]


@pytest.mark.parametrize(("body", "message"), [case[1:] for case in MALFORMED_PLATES],
                         ids=[case[0] for case in MALFORMED_PLATES])
def test_malformed_plates_rejected(puller, server, daemon_store, caplog, body, message):
    assert puller.poll_once()
    plates_before, faces_before = plate_rows(daemon_store), face_rows(daemon_store)
    server.overrides[PLATES_PATH] = body

    with caplog.at_level(logging.WARNING, logger="edge.watchlist.remote"):
        assert not puller.poll_once()

    assert message in caplog.text
    assert plate_rows(daemon_store) == plates_before
    assert face_rows(daemon_store) == faces_before
    assert puller.status()["errors"] == 1


def faces_body(**photo_changes) -> dict:
    photo = {"id": 4, "sha256": "a" * 64, "dimension": 3, "embedding": "AACAPwAAAAAAAAAA", **photo_changes}
    return {"version": 50, "model_id": MODEL_ID, "photos_without_embedding": 0,
            "persons": [{"id": 1, "name": "张三", "list_name": "wanted", "reason": "case", "photos": [photo]}]}


MALFORMED_FACES = [
    ("short embedding", faces_body(dimension=4), "embedding has 12 bytes, expected 16"),
    ("not base64", faces_body(embedding="not base64!"), "'embedding' is not base64 text"),
    ("not finite", faces_body(embedding="AADAfwAAAAAAAAAA"), "NaN or infinite"),
    ("bad sha256", faces_body(sha256="xyz"), "invalid sha256 'xyz'"),
    ("other model", {**faces_body(), "model_id": "other:000000000000"}, "embeddings of model 'other:000000000000'"),
]


@pytest.mark.parametrize(("body", "message"), [case[1:] for case in MALFORMED_FACES],
                         ids=[case[0] for case in MALFORMED_FACES])
def test_malformed_faces_rejected(puller, server, server_store, daemon_store, caplog, body, message):
    """A bad face list also keeps the old plates, even when the plates changed on the server."""
    assert puller.poll_once()
    plates_before, faces_before = plate_rows(daemon_store), face_rows(daemon_store)
    server_store.add_plate("京A12345", "case 9", "stolen-vehicles", actor="admin")
    server.overrides["/api/v1/watchlists/faces"] = body

    with caplog.at_level(logging.WARNING, logger="edge.watchlist.remote"):
        assert not puller.poll_once()

    assert message in caplog.text
    assert plate_rows(daemon_store) == plates_before
    assert face_rows(daemon_store) == faces_before


def test_valid_override_applies(puller, server, daemon_store):
    """The handmade face body of the malformed cases is valid when left unchanged."""
    server.overrides["/api/v1/watchlists/faces"] = faces_body()
    assert puller.poll_once()
    [embedding] = FaceWatchlist(daemon_store).export_embeddings(MODEL_ID).embeddings
    np.testing.assert_array_equal(embedding.vector, np.array([1, 0, 0], dtype=np.float32))


def test_wrong_token_counted_not_logged(server, daemon_store, caplog):
    wrong = "wrong-token-0123456789abcdef-0123456789"
    puller = WatchlistPuller(server.url, wrong, daemon_store, MODEL_ID, interval_s=1, timeout_s=2)
    with caplog.at_level(logging.DEBUG):
        assert not puller.poll_once()
        assert not puller.poll_once()
    assert "HTTP 401" in caplog.text
    assert "missing or invalid API token" in puller.status()["last_error"]
    assert puller.status()["errors"] == 2
    assert wrong not in caplog.text
    assert daemon_store.list_plates() == []


def test_token_never_logged(server, server_store, daemon_store, caplog):
    """The token stays out of every log line through start, sync, outage, recovery and close."""
    puller = WatchlistPuller(server.url, TOKEN, daemon_store, MODEL_ID, interval_s=0.1, timeout_s=2)
    with caplog.at_level(logging.DEBUG):
        puller.start()
        assert wait_until(lambda: puller.status()["updates"] == 1, timeout_s=10)
        server.stop()
        assert wait_until(lambda: puller.status()["errors"] >= 2, timeout_s=10)
        server_store.add_plate("京A12345", "case 9", "stolen-vehicles", actor="admin")
        server.start()
        assert wait_until(lambda: puller.status()["updates"] == 2, timeout_s=10)
        assert puller.close()
    assert "works again" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in str(puller.status())
    assert TOKEN not in str(daemon_store.audit_log(10))


def test_plates_only_without_model(server, daemon_store):
    puller = WatchlistPuller(server.url, TOKEN, daemon_store, None, interval_s=1, timeout_s=2)
    server.statuses.clear()
    assert puller.poll_once()
    assert server.statuses == [200]
    assert len(daemon_store.list_plates()) == 2
    assert FaceWatchlist(daemon_store).list_persons() == []


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://127.0.0.1/", "invalid watchlist source url"),
    ("127.0.0.1:8080", "invalid watchlist source url"),
    ("http://admin:secret@127.0.0.1:8080", "must not contain credentials"),
])
def test_invalid_url_raises(daemon_store, url, message):
    with pytest.raises(WatchlistSourceError, match=message):
        WatchlistPuller(url, TOKEN, daemon_store, None)


@pytest.mark.parametrize(("url", "message"), [
    ("https://admin:secret@web.example", "must not contain credentials"),
    ("file:///etc/passwd", "expected http://HOST"),
])
def test_site_config_url_rejected(url, message):
    with pytest.raises(ValueError, match=message):
        WatchlistSourceConfig(url=url, token_file="token")


def test_token_file_read_and_checked(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    assert read_token_file(path) == TOKEN

    path.write_text("two words\n", encoding="utf-8")
    with pytest.raises(WatchlistSourceError, match="one token with no spaces"):
        read_token_file(path)
    with pytest.raises(WatchlistSourceError, match="cannot read"):
        read_token_file(tmp_path / "missing")


def test_close_before_start_returns_at_once(daemon_store):
    puller = WatchlistPuller("http://127.0.0.1:9", TOKEN, daemon_store, None)
    assert puller.close(timeout_s=0)


def test_version_1_database_migrates(tmp_path):
    """A database from before 'watchlist.sync' keeps its audit rows and accepts the new action."""
    path = tmp_path / "old.sqlite"
    old_schema = store_module._SCHEMA.replace(", 'watchlist.sync'", "").replace("user_version = 2", "user_version = 1")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.executescript(old_schema)
    connection.execute("INSERT INTO audit_log (at, actor, action, detail) VALUES ('t', 'admin', 'plate.add', '{}')")
    connection.execute("UPDATE watchlist_version SET version = 1 WHERE id = 1")
    connection.close()

    store = WatchlistStore(path)
    with store.transaction(write=True) as connection:
        store.append_audit(connection, "remote:web", "watchlist.sync", {"plates": 0})

    assert [record.action for record in store.audit_log(10)] == ["watchlist.sync", "plate.add"]
    with pytest.raises(Exception, match="append-only"):
        with store.transaction(write=True) as connection:
            connection.execute("DELETE FROM audit_log")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2


def test_daemon_starts_and_stops_puller(server, tmp_path):
    """A site config with [watchlist_source] makes the daemon pull into its watchlist_db and report it in health."""
    from edge.daemon import Daemon
    from edge.plan import build_plan
    from tests.conftest import PEOPLE_CLIP

    token_file = tmp_path / "api-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    config = tmp_path / "site.toml"
    config.write_text(
        'watchlist_db = "daemon.sqlite"\n'
        f'[watchlist_source]\nurl = "{server.url}"\ntoken_file = "api-token"\ninterval_s = 1\n'
        f'[[cameras]]\nid = "c"\nname = "c"\nsource = "{PEOPLE_CLIP}"\n',
        encoding="utf-8",
    )
    daemon = Daemon(build_plan(config))
    daemon._start_watchlist_puller()
    try:
        assert wait_until(lambda: daemon.watchlist_puller.status()["updates"] == 1, timeout_s=10)
        assert daemon.health_body()["watchlist_source"]["updates"] == 1
    finally:
        assert daemon.watchlist_puller.close()
    assert len(WatchlistStore(tmp_path / "daemon.sqlite").list_plates()) == 2
