"""The assembled web app: every page and route against every role, search, export, acknowledge, images."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sqlite3
import urllib.parse
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest

from edge.bus.subscriber import FeedMessage
from edge.config.web import WebConfig
from edge.web.app import create_app
from edge.web.audit import AUDIT_LOG_KEY
from edge.web.keys import HIT_STORE_KEY, LIVE_HUB_KEY
from edge.web.live import SESSION_ENDED_CODE
from edge.web.security import SESSION_STORE_KEY, USER_STORE_KEY
from edge.web.store import HitQuery
from tests.web.auth_support import FAST_SCRYPT, PASSWORDS, FakeClock, log_in, page_csrf_token
from tests.web.layout_support import CHROMIUM, measure_layout


def jpeg(width: int = 320, height: int = 240, value: int = 90) -> bytes:
    image = np.full((height, width, 3), value, np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def plate_message(sequence: int, text: str = "皖K66666", topic: str = "hit.plate", camera_id: str = "gate-north",
                  frame_time: str = "2026-12-04T02:00:00.000Z", list_name: str = "stolen-vehicles",
                  settled: bool = True) -> FeedMessage:
    header = {
        "schema": 1, "publisher_id": "hub-07", "sequence": sequence, "sent_at": frame_time,
        "camera_id": camera_id, "track_id": sequence, "frame_time": frame_time,
        "plate": {"text": text, "type": "standard", "colour": "yellow", "confidence": 0.99, "reads": 3,
                  "settled": settled, "double_row": False,
                  "corners_xy": [[100, 150], [180, 150], [180, 175], [100, 175]]},
        "vehicle": {"class": "car", "box_xyxy": [40.0, 60.0, 260.0, 220.0]},
    }
    if topic == "hit.plate":
        header["watchlist"] = {"entry_id": 1, "pattern": text, "list_name": list_name, "reason": "case 2026-118",
                               "max_edits": 0, "distance": 0}
    return FeedMessage(topic, header, [jpeg(), jpeg(80, 30, 200)])


@pytest.fixture
def web_config() -> WebConfig:
    return WebConfig(feeds=[], retention={"check_interval_s": 3600})


@pytest.fixture
async def app_and_client(aiohttp_client, tmp_path, web_config):
    app = create_app(web_config, tmp_path / "web", scrypt_params=FAST_SCRYPT)
    for role, password in PASSWORDS.items():
        app[USER_STORE_KEY].add_user(role, password, role, actor="test-setup")
    store = app[HIT_STORE_KEY]
    store.add(plate_message(1))
    store.add(plate_message(2, text="苏B12345", topic="plate", frame_time="2026-12-04T03:00:00.000Z"))
    store.add(plate_message(3, text="苏BD73215", topic="plate", camera_id="gate-south",
                            frame_time="2026-12-04T04:00:00.000Z"))
    client = await aiohttp_client(app)
    return app, client


async def client_as(aiohttp_client, tmp_path, web_config, role: str | None):
    app = create_app(web_config, tmp_path / "web", scrypt_params=FAST_SCRYPT)
    for name, password in PASSWORDS.items():
        app[USER_STORE_KEY].add_user(name, password, name, actor="test-setup")
    app[HIT_STORE_KEY].add(plate_message(1))
    client = await aiohttp_client(app)
    if role is not None:
        response = await log_in(client, role)
        assert response.status == 303 or response.status == 302, await response.text()
    return app, client


# (method, path, lowest role allowed). POST routes get a valid CSRF token, so only the role decides.
ROUTES = [
    ("GET", "/", "viewer"),
    ("GET", "/live/rows", "viewer"),
    ("GET", "/search?plate=皖K66666", "viewer"),
    ("GET", "/search.csv?plate=皖K66666", "investigator"),
    ("GET", "/hits/1", "viewer"),
    ("GET", "/hits/1/snapshot.jpg", "viewer"),
    ("GET", "/hits/1/crop.jpg", "viewer"),
    ("GET", "/hits/1/annotated.jpg", "viewer"),
    ("POST", "/hits/1/ack", "investigator"),
    ("GET", "/cameras", "viewer"),
    ("GET", "/account", "viewer"),
    ("GET", "/watchlists/plates", "admin"),
    ("POST", "/watchlists/plates", "admin"),
    ("GET", "/watchlists/faces", "admin"),
    ("GET", "/users", "admin"),
    ("GET", "/audit", "admin"),
]
RANK = {"viewer": 0, "investigator": 1, "admin": 2}


@pytest.mark.parametrize("role", ["viewer", "investigator", "admin"])
async def test_route_table_by_role(aiohttp_client, tmp_path, web_config, role):
    _app, client = await client_as(aiohttp_client, tmp_path, web_config, role)
    token = await page_csrf_token(client)
    for method, path, lowest in ROUTES:
        if method == "GET":
            response = await client.get(path, allow_redirects=False)
        else:
            form = {"csrf_token": token, "note": "checked", "pattern": "京A12345", "list_name": "l",
                    "reason": "r", "max_edits": "0"}
            response = await client.post(path, data=form, allow_redirects=False)
        allowed = RANK[role] >= RANK[lowest]
        if allowed:
            assert response.status in (200, 303), f"{role} {method} {path}: {response.status}"
        else:
            assert response.status == 403, f"{role} {method} {path}: {response.status}, expected 403"


async def test_anonymous_redirected_everywhere(aiohttp_client, tmp_path, web_config):
    _app, client = await client_as(aiohttp_client, tmp_path, web_config, None)
    for method, path, _lowest in ROUTES:
        response = await client.request(method, path, allow_redirects=False)
        assert response.status in (302, 401, 403), f"anonymous {method} {path}: {response.status}"
        if method == "GET":
            assert response.status == 302
            assert response.headers["Location"].startswith("/login?next=")


async def test_health_probe_is_public(aiohttp_client, tmp_path, web_config):
    _app, client = await client_as(aiohttp_client, tmp_path, web_config, None)
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


@pytest.mark.parametrize("query, expected", [
    ({"plate": "皖K66666"}, ["皖K66666"]),
    ({"plate": "苏B", "mode": "prefix", "type": "plate"}, ["苏BD73215", "苏B12345"]),
    ({"plate": "苏B*5", "mode": "wildcard", "type": "plate"}, ["苏BD73215", "苏B12345"]),
    ({"plate": "苏 B·12345", "type": "plate"}, ["苏B12345"]),
    # Wildcards typed in the default exact mode still work as wildcards, full-width ones too.
    ({"plate": "苏B*5", "type": "plate"}, ["苏BD73215", "苏B12345"]),
    ({"plate": "苏B＊5", "type": "plate"}, ["苏BD73215", "苏B12345"]),
    ({"plate": "苏B1234？", "type": "plate"}, ["苏B12345"]),
    ({"camera": "gate-south", "type": "plate"}, ["苏BD73215"]),
    ({"type": "hits"}, ["皖K66666"]),
    # The site's time zone is Asia/Shanghai, 8 hours ahead of the UTC frame times.
    ({"since": "2026-12-04T10:30", "until": "2026-12-04T11:30", "type": "plate"}, ["苏B12345"]),
])
async def test_search_results(app_and_client, query, expected):
    app, client = app_and_client
    await log_in(client, "viewer")
    response = await client.get("/search", params=query)
    assert response.status == 200
    text = await response.text()
    shown = re.findall(r'<span class="plate plate-yellow">([^<]+)</span>', text)
    assert shown == expected
    records = app[AUDIT_LOG_KEY].query(1, 50, action="search").records
    assert records and records[0].detail["query"] == query


async def test_search_offers_known_cameras(app_and_client):
    app, client = app_and_client
    app[HIT_STORE_KEY].update_health({"schema": 1, "publisher_id": "hub-07", "sequence": 9, "uptime_s": 5.0,
                                      "cameras": [{"camera_id": "gate-south", "camera_name": "南门"}]})
    await log_in(client, "viewer")

    text = await (await client.get("/search")).text()

    assert '<option value="gate-south">南门</option>' in text
    assert 'list="camera-options"' in text


@pytest.mark.parametrize("params, shown", [
    ({"since": "yesterday"}, "时间格式无效：yesterday"),
    ({"since": "2026-12-04T12:00", "until": "2026-12-04T11:00"}, "结束时间 2026-12-04T11:00 不晚于开始时间"),
    # Year 1 in Asia/Shanghai is before the first moment in UTC that Python's datetime holds.
    ({"since": "0001-01-01T00:00"}, "时间格式无效：0001-01-01T00:00"),
])
async def test_search_rejects_bad_time(app_and_client, params, shown):
    _app, client = app_and_client
    await log_in(client, "investigator")
    response = await client.get("/search", params=params)
    export = await client.get("/search.csv", params=params)
    assert response.status == 400
    assert shown in await response.text()
    assert export.status == 400
    assert shown in await export.text()


async def test_search_pages(aiohttp_client, tmp_path, web_config):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, "viewer")
    for sequence in range(2, 62):
        app[HIT_STORE_KEY].add(plate_message(sequence, text=f"京A{sequence:05d}", topic="plate"))
    response = await client.get("/search", params={"plate": "京A", "mode": "prefix", "type": "plate"})
    text = await response.text()
    assert "共 60 条，第 1 / 2 页" in text
    next_link = re.search(r'id="next-page" href="([^"]+)"|href="([^"]+)" id="next-page"', text)
    assert next_link
    second = await client.get(next_link.group(1) or next_link.group(2).replace("&amp;", "&"))
    assert "第 2 / 2 页" in await second.text()


async def test_export_link_keeps_search(app_and_client):
    _app, client = app_and_client
    await log_in(client, "investigator")
    text = await (await client.get("/search", params={"plate": "苏B", "mode": "prefix", "type": "plate",
                                                        "page": "1"})).text()
    link = re.search(r'<a href="([^"]+)" id="export-csv"', text).group(1).replace("&amp;", "&")

    assert link.startswith("/search.csv?")
    assert "page=" not in link
    rows = list(csv.reader(io.StringIO((await (await client.get(link)).read()).decode("utf-8-sig"))))
    assert [row[4] for row in rows[1:]] == ["苏BD73215", "苏B12345"]


async def test_search_page_past_end_redirects(app_and_client):
    _app, client = app_and_client
    await log_in(client, "viewer")
    response = await client.get("/search", params={"plate": "苏B", "mode": "prefix", "page": "99999"},
                                allow_redirects=False)
    assert response.status == 302
    assert "page=1" in response.headers["Location"]
    assert "plate=" in response.headers["Location"]


async def test_search_rejects_long_plate(app_and_client):
    _app, client = app_and_client
    await log_in(client, "viewer")
    response = await client.get("/search", params={"plate": "京" * 33})
    assert response.status == 400
    assert "车牌号超过 32 个字符" in await response.text()


async def test_language_switch_keeps_search(app_and_client):
    _app, client = app_and_client
    await log_in(client, "viewer")
    text = await (await client.get("/search", params={"plate": "苏B", "mode": "prefix"})).text()
    link = re.search(r'<a class="lang" href="([^"]+)"', text).group(1).replace("&amp;", "&")

    response = await client.get(link, allow_redirects=False)

    assert response.status in (302, 303)
    assert urllib.parse.unquote(response.headers["Location"]) == "/search?plate=苏B&mode=prefix"


async def test_csv_export(app_and_client):
    app, client = app_and_client
    await log_in(client, "investigator")
    response = await client.get("/search.csv", params={"plate": "苏B", "mode": "prefix", "type": "plate"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    body = (await response.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:3] == ["编号", "类型", "摄像机"]
    assert [row[4] for row in rows[1:]] == ["苏BD73215", "苏B12345"]
    # Frame time 04:00 UTC is shown as 12:00 in Asia/Shanghai.
    assert rows[1][3] == "2026-12-04 12:00:00"
    # Type, plate type and colour are the page's words, not the feed's values.
    assert rows[1][1] == "车牌识别"
    assert rows[1][5] == "普通"
    assert rows[1][6] == "黄牌"
    assert app[AUDIT_LOG_KEY].query(1, 50, action="export").records[0].detail["rows"] == 2


async def test_csv_export_neutralises_formulas(aiohttp_client, tmp_path, web_config):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, "investigator")
    message = plate_message(9, list_name="=HYPERLINK(\"x\")")
    app[HIT_STORE_KEY].add(message)
    response = await client.get("/search.csv", params={"list": message.header["watchlist"]["list_name"]})
    rows = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert rows[1][10].startswith("'=")


async def test_hit_detail_and_acknowledge(app_and_client):
    app, client = app_and_client
    await log_in(client, "investigator")
    page = await client.get("/hits/1")
    text = await page.text()
    assert "皖K66666" in text
    assert "stolen-vehicles" in text
    assert "case 2026-118" in text
    assert app[AUDIT_LOG_KEY].query(1, 50, action="view_hit").records[0].detail["hit_id"] == 1

    token = await page_csrf_token(client)
    response = await client.post("/hits/1/ack", data={"csrf_token": token, "note": "车辆已拦截"},
                                 allow_redirects=False)
    assert response.status == 303
    hit = app[HIT_STORE_KEY].get(1)
    assert hit.acked_by == "investigator"
    assert hit.ack_note == "车辆已拦截"
    assert "车辆已拦截" in await (await client.get("/hits/1")).text()
    assert app[AUDIT_LOG_KEY].query(1, 50, action="acknowledge").records[0].detail["note"] == "车辆已拦截"


async def test_second_acknowledgement_rejected(app_and_client):
    app, client = app_and_client
    await log_in(client, "investigator")
    token = await page_csrf_token(client)
    await client.post("/hits/1/ack", data={"csrf_token": token, "note": "first"}, allow_redirects=False)
    await log_in(client, "admin")
    token = await page_csrf_token(client)
    page = await client.get("/hits/1")
    assert 'id="ack-form"' not in await page.text()
    response = await client.post("/hits/1/ack", data={"csrf_token": token, "note": "second"})
    assert response.status == 409
    assert "已由 investigator" in await response.text()
    hit = app[HIT_STORE_KEY].get(1)
    assert (hit.acked_by, hit.ack_note) == ("investigator", "first")


async def test_acknowledge_note_too_long(app_and_client):
    app, client = app_and_client
    await log_in(client, "investigator")
    token = await page_csrf_token(client)
    response = await client.post("/hits/1/ack", data={"csrf_token": token, "note": "x" * 2001})
    assert response.status == 400
    assert app[HIT_STORE_KEY].get(1).acked_at is None


async def test_plate_read_is_not_an_alert(app_and_client):
    app, client = app_and_client
    await log_in(client, "investigator")
    read = next(hit for hit in app[HIT_STORE_KEY].search(HitQuery(topic="plate")).hits)
    text = await (await client.get(f"/hits/{read.id}")).text()
    assert f"<h1>车牌识别记录 {read.id}</h1>" in text
    assert 'id="ack-form"' not in text

    response = await client.post(f"/hits/{read.id}/ack", data={"csrf_token": await page_csrf_token(client),
                                                               "note": "x"})
    assert response.status == 400
    assert app[HIT_STORE_KEY].get(read.id).acked_at is None


async def test_acknowledged_row_labelled(app_and_client):
    app, client = app_and_client
    await log_in(client, "investigator")
    hit = app[HIT_STORE_KEY].search(HitQuery(topic="hits")).hits[0]
    app[HIT_STORE_KEY].acknowledge(hit.id, "investigator", "done")
    text = await (await client.get("/")).text()
    assert '<span class="acked-label"' in text
    assert "已处置</span>" in text


async def test_unknown_hit_is_404(app_and_client):
    _app, client = app_and_client
    await log_in(client, "viewer")
    for path in ("/hits/999", "/hits/abc", "/hits/999/snapshot.jpg"):
        assert (await client.get(path)).status == 404, path


async def test_annotated_snapshot_has_box(app_and_client):
    _app, client = app_and_client
    await log_in(client, "viewer")
    plain = cv2.imdecode(np.frombuffer(await (await client.get("/hits/1/snapshot.jpg")).read(), np.uint8), 1)
    drawn = cv2.imdecode(np.frombuffer(await (await client.get("/hits/1/annotated.jpg")).read(), np.uint8), 1)
    assert plain.shape == drawn.shape
    # The vehicle box edge at x=40 is drawn red (BGR 0, 0, 255); the plain snapshot is grey there.
    assert drawn[140, 40, 2] > 200
    assert drawn[140, 40, 0] < 80
    assert abs(int(plain[140, 40, 2]) - 90) < 10


async def connect_live(app, client):
    """Open the live socket and wait until the hub has registered it."""
    socket = await client.ws_connect("/ws/live")
    hub = app[LIVE_HUB_KEY]
    for _ in range(500):
        if hub.client_count:
            break
        await asyncio.sleep(0.01)
    assert hub.client_count == 1
    return socket, hub


async def test_live_socket_pushes_new_hit(app_and_client):
    app, client = app_and_client
    await log_in(client, "viewer")
    socket, hub = await connect_live(app, client)
    hit = app[HIT_STORE_KEY].add(plate_message(20, text="粤B99999"))
    hub.publish(hit)
    message = await socket.receive_json(timeout=5)
    assert message["id"] == hit.id
    assert "粤B99999" in message["html"]
    await socket.close()


async def test_live_socket_closed_when_user_disabled(app_and_client):
    app, client = app_and_client
    app[LIVE_HUB_KEY].session_check_s = 0.05
    await log_in(client, "viewer")
    socket, hub = await connect_live(app, client)
    users = app[USER_STORE_KEY]
    viewer = next(user for user in users.list_users() if user.name == "viewer")

    users.set_disabled(viewer.id, True, actor="admin")
    app[SESSION_STORE_KEY].delete_user_sessions(viewer.id)
    closing = await socket.receive(timeout=5)

    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert closing.data == SESSION_ENDED_CODE
    assert hub.client_count == 0
    # A hit stored afterwards reaches no client.
    hub.publish(app[HIT_STORE_KEY].add(plate_message(21, text="粤B88888")))
    assert hub.counters.rows_sent == 0


async def test_live_session_check_survives_store_error(app_and_client, monkeypatch):
    app, client = app_and_client
    app[LIVE_HUB_KEY].session_check_s = 0.05
    answers = iter([sqlite3.OperationalError("database is locked"), False])

    def is_live(token: str) -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    await log_in(client, "viewer")
    monkeypatch.setattr(app[SESSION_STORE_KEY], "is_live", is_live)
    socket, hub = await connect_live(app, client)

    closing = await socket.receive(timeout=5)

    assert closing.data == SESSION_ENDED_CODE  # the check after the error still ran


async def test_live_socket_open_while_session_lives(app_and_client):
    app, client = app_and_client
    app[LIVE_HUB_KEY].session_check_s = 0.05
    await log_in(client, "viewer")
    socket, hub = await connect_live(app, client)
    await asyncio.sleep(0.3)  # several session checks

    hub.publish(app[HIT_STORE_KEY].add(plate_message(22, text="粤B77777")))
    message = await socket.receive_json(timeout=5)

    assert "粤B77777" in message["html"]
    assert hub.client_count == 1
    await socket.close()


async def test_live_rows_401_after_logout(app_and_client):
    app, client = app_and_client
    await log_in(client, "viewer")
    app[SESSION_STORE_KEY].delete_user_sessions(
        next(user.id for user in app[USER_STORE_KEY].list_users() if user.name == "viewer"))

    response = await client.get("/live/rows", headers={"X-Requested-With": "XMLHttpRequest"}, allow_redirects=False)

    assert response.status == 401


async def test_live_hub_drops_stalled_client(app_and_client):
    app, client = app_and_client
    await log_in(client, "viewer")
    socket, hub = await connect_live(app, client)
    (live_client,) = list(hub._clients)
    # Fill the client's queue as if its browser had stopped reading, then publish one more.
    while not live_client.queue.full():
        live_client.queue.put_nowait("{}")
    hub.publish(app[HIT_STORE_KEY].get(1))
    assert hub.client_count == 0
    assert hub.counters.clients_dropped == 1
    await socket.close()


@pytest.mark.parametrize("language, text", [("zh-CN", "实时告警"), ("en", "Live hits")])
async def test_live_page_language(app_and_client, language, text):
    _app, client = app_and_client
    await log_in(client, "viewer")
    client.session.cookie_jar.update_cookies({"lang": language})
    page = await client.get("/")
    assert f"<h1>{text}</h1>" in await page.text()


def health_message(uptime_s: float, frames_decoded: int) -> dict:
    return {
        "schema": 1, "publisher_id": "hub-07", "sequence": 100 + int(uptime_s), "sent_at": "2026-12-04T02:00:00.000Z",
        "uptime_s": uptime_s,
        "cameras": [{"camera_id": "gate-north", "camera_name": "北门入口", "state": "streaming",
                     "frames_decoded": frames_decoded,
                     "frames_dropped": 4, "reconnects": 2, "last_error": None, "last_frame_age_s": 0.04},
                    {"camera_id": "gate-south", "state": "backoff", "frames_decoded": 0, "frames_dropped": 0,
                     "reconnects": 7, "last_error": "rtsp://***@10.0.0.9/live: connection refused",
                     "last_frame_age_s": None}],
    }


@pytest.mark.parametrize("language, streaming, backoff", [("zh-CN", "正常", "等待重连"), ("en", "Streaming", "Waiting to reconnect")])
async def test_cameras_page_shows_health(app_and_client, language, streaming, backoff):
    app, client = app_and_client
    app[HIT_STORE_KEY].update_health(health_message(10.0, 100))
    app[HIT_STORE_KEY].update_health(health_message(15.0, 150))
    await log_in(client, "viewer")
    client.session.cookie_jar.update_cookies({"lang": language})
    text = await (await client.get("/cameras")).text()
    rows = re.findall(r'<tr class="state-(\w+)">(.*?)</tr>', text, re.S)
    assert [state for state, _ in rows] == ["streaming", "backoff"]
    north, south = (re.sub(r"<[^>]+>", "|", cells) for _, cells in rows)
    assert streaming in north
    assert "|10.0|" in north
    assert "|2|" in north
    assert backoff in south
    assert "connection refused" in south
    assert "|7|" in south


async def test_cameras_page_lists_feed_sources(aiohttp_client, tmp_path):
    from tests.conftest import free_port

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = WebConfig(feeds=[{"endpoint": endpoint}])
    app = create_app(config, tmp_path / "web", scrypt_params=FAST_SCRYPT)
    app[USER_STORE_KEY].add_user("viewer", PASSWORDS["viewer"], "viewer", actor="test-setup")
    client = await aiohttp_client(app)
    await log_in(client, "viewer")
    text = await (await client.get("/cameras")).text()
    assert endpoint in text
    assert re.search(r'<tr class="feed-(connecting|disconnected|starting)">', text)


async def test_unknown_page_is_translated_404(app_and_client):
    _app, client = app_and_client
    await log_in(client, "viewer")
    for path in ("/does-not-exist", "/hits/999999"):
        response = await client.get(path)
        assert response.status == 404, path
        text = await response.text()
        assert "页面不存在。" in text, path
        assert 'href="/search"' in text, "the error page keeps the navigation"


async def test_handler_failure_gets_app_page(app_and_client, monkeypatch, caplog):
    app, client = app_and_client
    await log_in(client, "viewer")

    def fail(*_args):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(app[HIT_STORE_KEY], "camera_status", fail)
    response = await client.get("/cameras")

    assert response.status == 500
    text = await response.text()
    assert "服务器内部错误，操作未完成。" in text
    assert 'href="/search"' in text, "the error page keeps the navigation"
    assert "disk I/O error" not in text
    assert "GET /cameras failed" in caplog.text
    assert "disk I/O error" in caplog.text


async def test_unsettled_plate_flagged(aiohttp_client, tmp_path, web_config):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, "viewer")
    # client_as stored hit 1 already.
    unsettled = app[HIT_STORE_KEY].add(plate_message(10, text="京EA5331", settled=False))
    settled = app[HIT_STORE_KEY].add(plate_message(11, text="苏B12345"))

    live = await (await client.get("/")).text()
    unsettled_hit = await (await client.get(f"/hits/{unsettled.id}")).text()
    settled_hit = await (await client.get(f"/hits/{settled.id}")).text()

    assert live.count('<span class="unsettled"') == 1
    assert "该车牌在轨迹结束时才发送，投票未达到阈值" in unsettled_hit
    assert "未确认" not in settled_hit


async def test_pages_show_camera_names(app_and_client):
    app, client = app_and_client
    app[HIT_STORE_KEY].update_health(health_message(10.0, 100))
    await log_in(client, "viewer")
    for path in ("/", "/hits/1", "/cameras"):
        text = await (await client.get(path)).text()
        assert "北门入口 (gate-north)" in text, path
    # A camera whose daemon sent no name keeps its id.
    assert '<td class="camera">gate-south</td>' in await (await client.get("/cameras")).text()


WIDTH_SCRIPT = """document.body.dataset.layout = JSON.stringify({
  scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth});"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
async def test_long_camera_name_keeps_layout(app_and_client, tmp_path):
    app, client = app_and_client
    health = health_message(10.0, 100)
    # Longer than any site config allows, as a faulty box could send it; the store cuts it.
    health["cameras"][0]["camera_name"] = "X" * 500
    app[HIT_STORE_KEY].update_health(health)
    await log_in(client, "viewer")
    for path in ("/", "/search?type=hits", "/cameras"):
        html = await (await client.get(path)).text()
        assert "X" * 100 in html, path

        layout = measure_layout(html, tmp_path, WIDTH_SCRIPT)

        assert layout["scrollWidth"] <= layout["innerWidth"], (path, layout)


@pytest.mark.parametrize("role", ["viewer", "investigator", "admin"])
async def test_change_own_password(aiohttp_client, tmp_path, web_config, role):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, role)
    token = await page_csrf_token(client)
    new_password = f"{role}-new-password-2"
    form = {"csrf_token": token, "current_password": PASSWORDS[role], "new_password": new_password,
            "repeat_password": new_password}
    response = await client.post("/account/password", data=form, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?reason=password_changed"
    login_page = await client.get(response.headers["Location"])
    assert "密码已修改，您的所有会话均已结束" in await login_page.text()
    # The change ended this session, and only the new password logs in.
    assert (await client.get("/", allow_redirects=False)).status == 302
    assert (await log_in(client, role)).status == 200
    assert (await log_in(client, role, new_password)).status == 303
    assert app[AUDIT_LOG_KEY].query(1, 50, action="user_password").records[0].user == role


@pytest.mark.parametrize("current, new, repeat, status, shown", [
    ("wrong-password-9", "viewer-new-password-2", "viewer-new-password-2", 400, "当前密码不正确"),
    (PASSWORDS["viewer"], "viewer-new-password-2", "viewer-new-password-3", 400, "两次输入的新密码不一致"),
    (PASSWORDS["viewer"], "short", "short", 400, "密码太短"),
    (PASSWORDS["viewer"], PASSWORDS["viewer"], PASSWORDS["viewer"], 400, "新密码与当前密码相同"),
])
async def test_change_own_password_rejected(aiohttp_client, tmp_path, web_config, current, new, repeat, status, shown):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, "viewer")
    token = await page_csrf_token(client)
    response = await client.post("/account/password", data={
        "csrf_token": token, "current_password": current, "new_password": new, "repeat_password": repeat})
    assert response.status == status
    assert shown in await response.text()
    assert app[USER_STORE_KEY].authenticate("viewer", PASSWORDS["viewer"]) is not None


async def test_wrong_current_passwords_audited_and_throttled(aiohttp_client, tmp_path, web_config):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, "viewer")
    token = await page_csrf_token(client)
    form = {"csrf_token": token, "current_password": "wrong-password-9", "new_password": "viewer-new-password-2",
            "repeat_password": "viewer-new-password-2"}
    for _ in range(5):
        assert (await client.post("/account/password", data=form)).status == 400

    throttled = await client.post("/account/password", data=form)

    assert throttled.status == 429
    assert int(throttled.headers["Retry-After"]) > 0
    text = await throttled.text()
    assert re.search(r"失败次数过多，请 \d+ 秒后再试。在此之前，该用户名的登录也会被拒绝。", text), text[-800:]
    records = app[AUDIT_LOG_KEY].query(1, 50, action="password_change_failed").records
    assert len(records) == 6
    assert records[0].detail == {"throttled": True}
    assert [record.user for record in records] == ["viewer"] * 6


async def test_image_requests_keep_session_idle(aiohttp_client, tmp_path, web_config):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, None)
    sessions = app[SESSION_STORE_KEY]
    clock = FakeClock()
    sessions.clock = clock
    await log_in(client, "admin")
    background = ("/hits/1/annotated.jpg", "/hits/1/snapshot.jpg", "/hits/1/crop.jpg",
                  "/watchlists/faces/photos/1.jpg", "/live/rows")

    # An open live page fetches row images for almost the whole idle time, and the user does nothing.
    for step in range(4):
        clock.advance(sessions.ttl_s / 4 - (1 if step == 3 else 0))
        for path in background:
            response = await client.get(path, allow_redirects=False)
            assert response.status in (200, 404), (path, response.status)

    clock.advance(2)
    response = await client.get("/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith("/login")


async def test_page_request_refreshes_session(aiohttp_client, tmp_path, web_config):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, None)
    sessions = app[SESSION_STORE_KEY]
    clock = FakeClock()
    sessions.clock = clock
    await log_in(client, "viewer")

    clock.advance(sessions.ttl_s / 2)
    assert (await client.get("/hits/1", allow_redirects=False)).status == 200
    clock.advance(sessions.ttl_s / 2 + 1)

    assert (await client.get("/", allow_redirects=False)).status == 200


@pytest.mark.parametrize("path, needed", [
    ("/watchlists/plates", "admin"),
    ("/users", "admin"),
    ("/hits/1/ack", "investigator"),
])
async def test_role_rejection_audited(aiohttp_client, tmp_path, web_config, path, needed):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, "viewer")
    token = await page_csrf_token(client)

    response = await client.post(path, data={"csrf_token": token, "pattern": "京A12345"})

    assert response.status == 403
    (record,) = app[AUDIT_LOG_KEY].query(1, 50, action="forbidden").records
    assert record.user == "viewer"
    assert record.detail == {"method": "POST", "path": path, "role": "viewer", "required_role": needed}


async def test_denied_page_view_not_audited(aiohttp_client, tmp_path, web_config):
    app, client = await client_as(aiohttp_client, tmp_path, web_config, "viewer")
    assert (await client.get("/users")).status == 403
    assert app[AUDIT_LOG_KEY].query(1, 50, action="forbidden").total == 0


async def test_acknowledge_note_kept_after_error(app_and_client):
    _app, client = app_and_client
    await log_in(client, "investigator")
    token = await page_csrf_token(client)
    note = "车辆已拦截" + "x" * 2000

    response = await client.post("/hits/1/ack", data={"csrf_token": token, "note": note})

    assert response.status == 400
    assert f'rows="3">{note}</textarea>' in await response.text()
