"""Watchlist pages: plate add, remove and CSV import, face enrolment from uploads, bad uploads that change nothing,
and enrolled photos beside face hits."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import FormData

from edge.config.web import WebConfig
from edge.watchlist.faces import FaceWatchlist
from edge.web.app import create_app
from edge.web.audit import AUDIT_LOG_KEY
from edge.web.keys import HIT_STORE_KEY, WATCHLIST_KEY
from edge.web.routes_faces import PHOTO_VIEW_MAX_SIDE
from edge.web.security import USER_STORE_KEY
from tests.conftest import ASSETS
from tests.watchlist.test_enrol import small_blurred_face
from tests.web.auth_support import FAST_SCRYPT, PASSWORDS, log_in, page_csrf_token
from tests.web.layout_support import CHROMIUM, measure_layout
from tests.web.test_store import face_message

FACES = ASSETS / "images" / "faces"


@pytest.fixture
async def admin(aiohttp_client, tmp_path):
    app = create_app(WebConfig(), tmp_path / "web", scrypt_params=FAST_SCRYPT)
    for role, password in PASSWORDS.items():
        app[USER_STORE_KEY].add_user(role, password, role, actor="test-setup")
    client = await aiohttp_client(app)
    await log_in(client, "admin")
    return app, client, await page_csrf_token(client)


def upload_form(token: str, field: str, data: bytes, filename: str, **fields: str) -> FormData:
    form = FormData()
    form.add_field("csrf_token", token)
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field(field, data, filename=filename, content_type="application/octet-stream")
    return form


async def import_csv(client, token: str, csv_text: str):
    """Post `csv_text` as the UTF-8 file list.csv to the plate import form."""
    return await client.post("/watchlists/plates/import",
                             data=upload_form(token, "file", csv_text.encode("utf-8"), "list.csv"))


async def test_add_and_remove_plate(admin):
    app, client, token = admin
    response = await client.post("/watchlists/plates", data={
        "csrf_token": token, "pattern": "苏B*123", "list_name": "stolen-vehicles", "reason": "case 7", "max_edits": "1"})
    assert response.status == 200
    assert "已添加布控车牌 苏B*123" in await response.text()
    (entry,) = app[WATCHLIST_KEY].list_plates()
    assert (entry.pattern, entry.max_edits, entry.created_by) == ("苏B*123", 1, "web:admin")

    removed = await client.post(f"/watchlists/plates/{entry.id}/remove", data={"csrf_token": token},
                                allow_redirects=False)
    assert removed.status == 303
    assert app[WATCHLIST_KEY].list_plates() == []
    actions = [record.action for record in app[AUDIT_LOG_KEY].query(1, 50).records]
    assert "watchlist_plate_add" in actions
    assert "watchlist_plate_remove" in actions
    assert "已删除 1 条布控条目" in await (await client.get(removed.headers["Location"])).text()

    again = await client.post(f"/watchlists/plates/{entry.id}/remove", data={"csrf_token": token})
    assert "没有找到要删除的条目" in await again.text()
    # The audit row names what went, because the entry itself is gone.
    (record,) = app[AUDIT_LOG_KEY].query(1, 50, action="watchlist_plate_remove").records
    assert record.detail == {"entry_id": entry.id, "pattern": "苏B*123", "list_name": "stolen-vehicles",
                             "reason": "case 7", "max_edits": 1}


async def test_text_fields_stop_at_store_limit(admin):
    _app, client, _token = admin
    for page in ("/watchlists/plates", "/watchlists/faces"):
        text = await (await client.get(page)).text()
        assert '<input name="reason" required maxlength="200"' in text
        assert '<input name="list_name" required maxlength="200"' in text


async def test_plates_page_pages_and_filters(admin):
    app, client, token = admin
    store = app[WATCHLIST_KEY]
    for number in range(250):
        store.add_plate(f"沪C{number:05d}", "bulk import", "bulk")
    store.add_plate("京A12345", "case 1", "stolen")

    first = await client.get("/watchlists/plates")
    text = await first.text()
    assert "布控车牌（251 条）" in text
    assert text.count('<td class="plate">') == 100
    assert "第 1 / 3 页" in text

    filtered = await (await client.get("/watchlists/plates", params={"q": "沪c0012"})).text()
    assert "布控车牌（10 条）" in filtered
    by_list = await (await client.get("/watchlists/plates", params={"list": "stolen"})).text()
    assert "布控车牌（1 条）" in by_list
    assert "京A12345" in by_list


async def test_remove_whole_list(admin):
    app, client, token = admin
    store = app[WATCHLIST_KEY]
    for number in range(5):
        store.add_plate(f"沪C{number:05d}", "bulk import", "bulk")
    store.add_plate("京A12345", "case 1", "stolen")

    response = await client.post("/watchlists/plates/lists/remove", data={"csrf_token": token, "list_name": "bulk"})

    assert "已删除整个布控库，共 5 条条目" in await response.text()
    assert [entry.pattern for entry in store.list_plates()] == ["京A12345"]
    record = app[AUDIT_LOG_KEY].query(1, 50, action="watchlist_plate_remove").records[0]
    assert record.detail == {"list_name": "bulk", "removed": 5}


@pytest.mark.parametrize("form, shown", [
    ({"pattern": "", "list_name": "l", "reason": "r", "max_edits": "0"}, "请填写：车牌或模式。"),
    ({"pattern": "京A12%45", "list_name": "l", "reason": "r", "max_edits": "0"}, "车牌或模式含有不允许的字符 %"),
    # A combining mark prints as nothing on its own, so it is named by its code point.
    ({"pattern": "京A12\u0301345", "list_name": "l", "reason": "r", "max_edits": "0"}, "不允许的字符 U+0301；"),
    ({"pattern": "ABCD", "list_name": "l", "reason": "r", "max_edits": "0"}, "ABCD 不可能匹配任何车牌"),
    ({"pattern": "1234567", "list_name": "l", "reason": "r", "max_edits": "0"}, "它不符合任何中国大陆车牌格式"),
    ({"pattern": "京京京京京京京", "list_name": "l", "reason": "r", "max_edits": "0"}, "它不符合任何中国大陆车牌格式"),
    ({"pattern": "苏BO1234", "list_name": "l", "reason": "r", "max_edits": "0"}, "字母 I 和 O，按车牌格式，第 3 位的字符会被改正，这块车牌会被识别并输出为 苏B01234"),
    ({"pattern": "B*123", "list_name": "l", "reason": "r", "max_edits": "0"}, "车牌以省份简称"),
    ({"pattern": "苏*", "list_name": "l", "reason": "r", "max_edits": "0"}, "会对大量车牌告警：至少需要 4 个车牌字符，请多给几个字符。"),
    ({"pattern": "苏A12*", "list_name": "l", "reason": "r", "max_edits": "1"}, "容错字符数为 1 时至少需要 5 个车牌字符"),
    ({"pattern": "京A12345", "list_name": "l", "reason": "r", "max_edits": "x"}, "容错字符数必须是 0、1 或 2"),
    ({"pattern": "京A12345", "list_name": "l", "reason": "r", "max_edits": "7"}, "容错字符数 7 无效：必须是 0、1 或 2。"),
])
async def test_invalid_plate_changes_nothing(admin, form, shown):
    app, client, token = admin
    response = await client.post("/watchlists/plates", data={"csrf_token": token, **form})
    assert response.status == 400
    assert shown in await response.text()
    assert app[WATCHLIST_KEY].list_plates() == []


async def test_import_lists_rejected_rows(admin):
    app, client, token = admin
    csv_text = ("pattern,reason,list_name,max_edits\n"
                "京A12345,case 1,stolen,0\n"
                ",case 2,stolen,0\n"
                "沪B54321,case 3,stolen,9\n"
                "粤C11111,case 4,stolen,1\n")
    response = await import_csv(client, token, csv_text)
    text = await response.text()
    assert response.status == 200
    assert "已导入 2 条，拒绝 2 行" in text
    assert '<table class="grid" id="rejected-rows">' in text
    assert "<td>3</td>" in text
    assert "<td>4</td>" in text
    assert sorted(entry.pattern for entry in app[WATCHLIST_KEY].list_plates()) == ["京A12345", "粤C11111"]


async def test_import_gbk_file_explained_in_chinese(admin):
    app, client, token = admin
    csv_bytes = "pattern,reason,list_name,max_edits\n沪A88888,案件,stolen,0\n".encode("gbk")
    response = await client.post("/watchlists/plates/import", data=upload_form(token, "file", csv_bytes, "名单.csv"))
    text = await response.text()
    assert response.status == 400
    assert "名单.csv 是 GBK 编码" in text, re.findall(r"<p class=.error.*?</p>", text, re.S)
    assert "CSV UTF-8" in text
    assert app[WATCHLIST_KEY].list_plates() == []


async def test_import_error_names_uploaded_file(admin):
    _app, client, token = admin
    response = await client.post("/watchlists/plates/import",
                                 data=upload_form(token, "file", b"name,text\na,b\n", "plates.csv"))
    text = await response.text()
    assert response.status == 400
    assert "plates.csv" in text
    assert "edge-import-" not in text


@pytest.mark.parametrize("data, shown", [
    (b"Pattern,Reason,\xe7\xb2\xa4C12345\na,b,c\n", "plates.csv：表头无效：缺少 list_name；无法识别 粤C12345。"
                                                     "表头应为 pattern,reason,list_name,max_edits。"),
    (b"", "plates.csv：文件是空的，第一行必须是表头 pattern,reason,list_name,max_edits。"),
    (b"pattern,reason,list_name\n\"\xff\xff\n", "plates.csv：文件不是 UTF-8 编码"),
])
async def test_import_failure_explained_in_chinese(admin, data, shown):
    _app, client, token = admin

    response = await client.post("/watchlists/plates/import", data=upload_form(token, "file", data, "plates.csv"))

    assert response.status == 400
    assert shown in await response.text()


def photos_form(token: str, photos: list[tuple[str, bytes]], **fields: str) -> FormData:
    """Return the face form with several (file name, data) photos in the field `photo`."""
    (first_name, first_data), *others = photos
    form = upload_form(token, "photo", first_data, first_name, **fields)
    for name, data in others:
        form.add_field("photo", data, filename=name, content_type="application/octet-stream")
    return form


async def test_same_face_under_two_names_rejected(admin):
    app, client, token = admin
    first = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", (FACES / "obama" / "obama_1.jpg").read_bytes(), "a.jpg", name="Barack Obama",
        list_name="vip", reason="test enrolment"))
    assert first.status == 200
    second = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", (FACES / "obama" / "obama_2.jpg").read_bytes(), "b.jpg", name="Someone else",
        list_name="wanted", reason="test enrolment"))
    assert second.status == 400
    assert "照片中的人脸与已布控人员 1“Barack Obama”（布控库“vip”）相同" in await second.text()
    assert [person.name for person in FaceWatchlist(app[WATCHLIST_KEY]).list_persons()] == ["Barack Obama"]


async def test_enrol_face_from_two_photos(admin):
    app, client, token = admin
    form = photos_form(token, [("a.jpg", (FACES / "obama" / "obama_1.jpg").read_bytes()),
                               ("b.jpg", (FACES / "obama" / "obama_2.jpg").read_bytes())],
                       name="Barack Obama", list_name="vip", reason="test enrolment")
    response = await client.post("/watchlists/faces", data=form)
    assert response.status == 200, await response.text()
    (person,) = FaceWatchlist(app[WATCHLIST_KEY]).list_persons()
    assert person.photos == 2
    record = app[AUDIT_LOG_KEY].query(1, 50, action="watchlist_face_add").records[0]
    assert record.detail["file_names"] == ["a.jpg", "b.jpg"]


async def test_photos_of_two_people_rejected_in_chinese(admin):
    app, client, token = admin
    form = photos_form(token, [("kit.jpg", (FACES / "kit_harington" / "kit_harington_1.jpg").read_bytes()),
                               ("rose.jpg", (FACES / "rose_leslie" / "rose_leslie_1.jpg").read_bytes())],
                       name="KitRose", list_name="wanted", reason="two persons")

    response = await client.post("/watchlists/faces", data=form)

    assert response.status == 400
    assert "照片 kit.jpg 与 rose.jpg 不是同一个人" in await response.text()
    assert FaceWatchlist(app[WATCHLIST_KEY]).list_persons() == []


@pytest.mark.parametrize("language, shown", [
    ("zh-CN", "notes.txt：文件不是可识别的 JPEG 或 PNG 图片。本次上传的照片均未添加。"),
    ("en", "notes.txt: The file is not a readable JPEG or PNG image. None of the uploaded photos was added."),
])
async def test_bad_photo_among_several_enrols_nothing(admin, language, shown):
    app, client, token = admin
    client.session.cookie_jar.update_cookies({"lang": language})
    form = photos_form(token, [("a.jpg", (FACES / "obama" / "obama_1.jpg").read_bytes()),
                               ("notes.txt", b"not an image")],
                       name="Barack Obama", list_name="vip", reason="test enrolment")
    response = await client.post("/watchlists/faces", data=form)
    assert response.status == 400
    # The outcome is stated once, not as both "the watchlist is unchanged" and "no photo was added".
    error = re.search(r'<p class="error" role="alert">(.*?)(<br>|</p>)', await response.text())
    assert error, "no error message on the page"
    assert error.group(1) == shown
    assert FaceWatchlist(app[WATCHLIST_KEY]).list_persons() == []


async def test_import_audit_names_lists_and_ids(admin):
    app, client, token = admin
    app[WATCHLIST_KEY].add_plate("京A00001", "earlier entry", "stolen")
    csv_text = ("pattern,reason,list_name,max_edits\n"
                "京A12345,case 1,stolen,0\n"
                "沪B54321,case 2,wanted,0\n"
                "沪B54322,,wanted,0\n"
                "沪B54323,case 4,wanted,1\n")
    response = await import_csv(client, token, csv_text)
    assert response.status == 200

    (record,) = app[AUDIT_LOG_KEY].query(1, 50, action="watchlist_plate_import").records
    assert record.detail["loaded"] == 3
    assert record.detail["rejected"] == 1
    assert record.detail["list_names"] == ["stolen", "wanted"]
    assert record.detail["entry_ids"] == "2-4"
    audit_page = await (await client.get("/audit")).text()
    assert "布控库：stolen、wanted" in audit_page
    assert "条目编号范围：2-4" in audit_page


async def test_rejected_rows_explained_in_chinese(admin):
    _app, client, token = admin
    csv_text = ("pattern,reason,list_name,max_edits\n"
                "京A12345,case 1,stolen,0\n"
                "沪B54321,,stolen,0\n"
                "沪B54322,case 3,stolen,9\n"
                "京A12345,case 4,stolen,0\n"
                "苏B#1234,case 5,stolen,0\n"
                "1234567,case 6,stolen,0\n")
    response = await import_csv(client, token, csv_text)
    text = await response.text()
    rows = dict(re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", text))
    assert rows["3"] == "布控原因为空；请写明布控原因，如案件编号。"
    assert rows["4"] == "容错字符数 9 无效：必须是 0、1 或 2。"
    assert rows["5"] == "京A12345（布控库“stolen”）与第 2 行重复。"
    assert rows["6"].startswith("车牌或模式含有不允许的字符 #")
    assert "它不符合任何中国大陆车牌格式" in rows["7"]


async def test_enrol_face_photo(admin):
    app, client, token = admin
    photo = (FACES / "obama" / "obama_1.jpg").read_bytes()
    response = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", photo, "obama.jpg", name="Barack Obama", list_name="vip", reason="test enrolment"))
    assert response.status == 200, await response.text()
    assert "已添加布控人员 Barack Obama" in await response.text()
    (person,) = FaceWatchlist(app[WATCHLIST_KEY]).list_persons()
    assert (person.name, person.photos, person.created_by) == ("Barack Obama", 1, "web:admin")
    assert app[AUDIT_LOG_KEY].query(1, 50, action="watchlist_face_add").records[0].detail["name"] == "Barack Obama"


def grey_png() -> bytes:
    return cv2.imencode(".png", np.full((480, 640, 3), 128, np.uint8))[1].tobytes()


@pytest.mark.parametrize("case, data, status, shown", [
    ("not an image", lambda: b"this is a text file, not a photo\n" * 10, 400, "不是可识别的 JPEG 或 PNG 图片。布控库未改变。"),
    ("no face", grey_png, 400, "照片中没有找到人脸。请换一张清晰的正脸照片。布控库未改变。"),
    ("several faces", lambda: (FACES / "group_obama_biden.jpg").read_bytes(), 400, "照片中有多张人脸"),
    ("small blurred face", small_blurred_face, 400, "人脸质量不合格：人脸过小、图像模糊。"),
    ("50 MB", lambda: b"\xff\xd8\xff" + bytes(50 * 1024 * 1024), 413, "上传内容过大：不能超过 10 MB"),
])
async def test_bad_face_upload_changes_nothing(admin, case, data, status, shown):
    app, client, token = admin
    response = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", data(), "upload.jpg", name="Someone", list_name="vip", reason="test"))
    assert response.status == status, case
    assert shown in await response.text(), case
    assert FaceWatchlist(app[WATCHLIST_KEY]).list_persons() == []
    assert app[AUDIT_LOG_KEY].query(1, 50, action="watchlist_face_add").total == 0


@pytest.mark.parametrize("path, field, form_id", [
    ("/watchlists/plates/import", "file", "import-plates"),
    ("/watchlists/faces", "photo", "add-face"),
])
async def test_oversized_upload_shows_watchlist_page(admin, path, field, form_id):
    app, client, token = admin
    data = b"\xff\xd8\xff" + bytes(11 * 1024 * 1024)
    response = await client.post(path, data=upload_form(token, field, data, "big.jpg", name="Someone",
                                                        list_name="vip", reason="test"))

    assert response.status == 413
    text = await response.text()
    assert "上传内容过大：不能超过 10 MB。未做任何更改。" in text
    assert f'id="{form_id}"' in text, "the watchlist page with its form, not the generic error page"
    assert "返回首页" not in text
    assert app[WATCHLIST_KEY].list_plates() == []
    assert FaceWatchlist(app[WATCHLIST_KEY]).list_persons() == []


async def test_upload_forms_carry_size_limit(admin):
    _app, client, _token = admin
    for path, form_id in (("/watchlists/plates", "import-plates"), ("/watchlists/faces", "add-face")):
        text = await (await client.get(path)).text()
        assert f'id="{form_id}" data-max-bytes="{10 * 1024 * 1024}"' in text, path
        assert f'data-too-large="{form_id}" hidden>所选文件过大：合计不能超过 10 MB。' in text, path
        assert '<script src="/static/upload_limit.js"></script>' in text, path
    script = await client.get("/static/upload_limit.js")
    assert script.status == 200
    assert "script-src 'self'" in script.headers["Content-Security-Policy"]


async def test_duplicate_and_missing_fields_in_chinese(admin):
    app, client, token = admin
    form = {"csrf_token": token, "pattern": "京A12345", "list_name": "stolen", "reason": "case 1", "max_edits": "0"}
    assert (await client.post("/watchlists/plates", data=form)).status == 200
    duplicate = await client.post("/watchlists/plates", data={**form, "pattern": "京a 12345"})
    assert duplicate.status == 400
    assert "京A12345 已在布控库“stolen”中（条目 1）" in await duplicate.text()
    missing = await client.post("/watchlists/plates", data={**form, "pattern": "沪B11111", "reason": " "})
    assert missing.status == 400
    assert "请填写：布控原因。" in await missing.text()
    assert len(app[WATCHLIST_KEY].list_plates()) == 1


async def enrol_obama(app, client, token: str, list_name: str = "wanted") -> int:
    response = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", (FACES / "obama" / "obama_1.jpg").read_bytes(), "obama.jpg", name="Barack Obama",
        list_name=list_name, reason="test enrolment"))
    assert response.status == 200, await response.text()
    ((photo_id,),) = FaceWatchlist(app[WATCHLIST_KEY]).photo_ids().values()
    return photo_id


async def test_enrolled_photo_served_scaled(admin):
    app, client, token = admin
    photo_id = await enrol_obama(app, client, token)

    page = await (await client.get("/watchlists/faces")).text()
    response = await client.get(f"/watchlists/faces/photos/{photo_id}.jpg")

    assert f'src="/watchlists/faces/photos/{photo_id}.jpg"' in page
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert "no-store" in response.headers["Cache-Control"]
    image = cv2.imdecode(np.frombuffer(await response.read(), np.uint8), cv2.IMREAD_COLOR)
    assert max(image.shape[:2]) == PHOTO_VIEW_MAX_SIDE
    assert (await client.get(f"/watchlists/faces/photos/{photo_id + 1}.jpg")).status == 404
    assert (await client.get(f"/watchlists/faces/photos/{10**30}.jpg")).status == 404


async def test_enrolled_photo_hidden_from_viewer(admin):
    app, client, token = admin
    photo_id = await enrol_obama(app, client, token)
    client.session.cookie_jar.clear()
    await log_in(client, "viewer")

    response = await client.get(f"/watchlists/faces/photos/{photo_id}.jpg", allow_redirects=False)

    assert response.status == 403


@pytest.mark.parametrize("list_name, shown", [("wanted", True), ("another-list", False)])
async def test_face_hit_shows_enrolled_photo(admin, list_name, shown):
    app, client, token = admin
    photo_id = await enrol_obama(app, client, token, list_name)
    # The hit names person 1, "Barack Obama" on the list "wanted"; on another list it is not the same person.
    hit = app[HIT_STORE_KEY].add(face_message(1))

    page = await (await client.get(f"/hits/{hit.id}")).text()

    assert 'id="enrolled-photos"' in page
    assert (f'src="/watchlists/faces/photos/{photo_id}.jpg"' in page) is shown
    assert ("该人员已不在人脸布控库中" in page) is not shown


async def test_viewer_sees_no_enrolled_photos(admin):
    app, client, token = admin
    await enrol_obama(app, client, token)
    hit = app[HIT_STORE_KEY].add(face_message(1))
    client.session.cookie_jar.clear()
    await log_in(client, "viewer")

    page = await (await client.get(f"/hits/{hit.id}")).text()

    assert "Barack Obama" in page
    assert 'id="enrolled-photos"' not in page


async def test_huge_path_ids_not_found(admin):
    _app, client, token = admin
    huge = 10**30

    assert (await client.get(f"/hits/{huge}")).status == 404
    assert (await client.post(f"/watchlists/faces/{huge}/remove", data={"csrf_token": token})).status == 404
    assert (await client.post(f"/watchlists/plates/{huge}/remove", data={"csrf_token": token})).status == 404
    assert (await client.post(f"/users/{huge}/disable", data={"csrf_token": token})).status == 404
    assert (await client.get(f"/search?page={huge}")).status in (200, 303)


async def test_add_plate_redirects_with_notice(admin):
    app, client, token = admin
    response = await client.post("/watchlists/plates", data={
        "csrf_token": token, "pattern": "苏b 12345", "list_name": "stolen", "reason": "case 8", "max_edits": "0"},
        allow_redirects=False)

    assert response.status == 303
    page = await client.get(response.headers["Location"])
    assert "已添加布控车牌 苏B12345。" in await page.text()
    assert len(app[WATCHLIST_KEY].list_plates()) == 1


async def test_added_notice_shows_only_patterns(admin):
    _app, client, _token = admin
    text = await (await client.get("/watchlists/plates", params={"notice": "added", "pattern": "请致电 123"})).text()
    assert "已添加布控车牌" not in text
    assert "请致电" not in text


@pytest.mark.parametrize("path, params, shown", [
    ("/watchlists/plates", {"notice": "removed", "count": "3"}, "已删除 3 条布控条目。"),
    ("/watchlists/plates", {"notice": "list_removed", "count": "12"}, "已删除整个布控库，共 12 条条目。"),
    ("/watchlists/faces", {"notice": "removed", "person": "7"}, "已删除布控人员 7 及其照片。"),
    ("/watchlists/faces", {"notice": "not_found", "person": "7"}, "没有找到布控人员 7"),
])
async def test_notice_shows_counts(admin, path, params, shown):
    _app, client, _token = admin
    assert shown in await (await client.get(path, params=params)).text()


@pytest.mark.parametrize("value", ["<b>999999999999", "-1", "+5", " 5", "1_0", "٣", "3.0", "", "9" * 20])
async def test_notice_rejects_non_count(admin, value):
    _app, client, _token = admin
    plates = await (await client.get("/watchlists/plates", params={"notice": "removed", "count": value})).text()
    assert "已删除" not in plates
    assert "&lt;b&gt;" not in plates
    faces = await (await client.get("/watchlists/faces", params={"notice": "removed", "person": value})).text()
    assert "已删除布控人员" not in faces


async def test_max_edits_kept_after_error(admin):
    _app, client, token = admin
    response = await client.post("/watchlists/plates", data={
        "csrf_token": token, "pattern": "", "list_name": "stolen", "reason": "case 9", "max_edits": "2"})
    assert response.status == 400
    assert '<option value="2" selected>' in await response.text()


@pytest.mark.parametrize("pattern, shown, absent", [
    ("沪E100020", "按该位置的车牌格式，第 8 位的字符会被改正，这块车牌会被识别并输出为 沪E10002D",
     "I 和 O"),
    ("沪E1OO02", "车牌中不会出现字母 I 和 O，按车牌格式，第 4、5 位的字符会被改正，"
     "这块车牌会被识别并输出为 沪E10002", None),
])
async def test_corrected_pattern_explained(admin, pattern, shown, absent):
    _app, client, token = admin
    form = {"csrf_token": token, "pattern": pattern, "list_name": "l", "reason": "r", "max_edits": "0"}
    response = await client.post("/watchlists/plates", data=form)
    text = await response.text()
    assert response.status == 400
    assert shown in text
    if absent:
        assert absent not in text

    csv_text = f"pattern,reason,list_name,max_edits\n{pattern},case 1,stolen,0\n"
    imported = await import_csv(client, token, csv_text)
    assert shown in await imported.text()


async def test_corrected_pattern_explained_in_english(admin):
    _app, client, token = admin
    client.session.cookie_jar.update_cookies({"lang": "en"})
    form = {"csrf_token": token, "pattern": "沪E100020", "list_name": "l", "reason": "r", "max_edits": "0"}
    text = await (await client.post("/watchlists/plates", data=form)).text()
    assert "does not allow the character at position 8, so this plate is read and published as 沪E10002D" in text
    assert "I and O" not in text


async def test_import_lists_at_most_200_rejected_rows(admin):
    _app, client, token = admin
    csv_text = "pattern,reason,list_name,max_edits\n" + "".join(f",case {n},stolen,0\n" for n in range(230))
    response = await import_csv(client, token, csv_text)
    text = await response.text()
    assert "已导入 0 条，拒绝 230 行" in text
    assert len(re.findall(r"<tr><td>\d+</td>", text)) == 200
    assert "另有 30 行被拒绝，未在此列出。" in text


async def test_enrol_and_remove_face_redirect_with_notice(admin):
    app, client, token = admin
    response = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", (FACES / "obama" / "obama_1.jpg").read_bytes(), "obama.jpg", name="Barack Obama",
        list_name="vip", reason="test enrolment"), allow_redirects=False)
    assert response.status == 303
    assert "已添加布控人员 Barack Obama。" in await (await client.get(response.headers["Location"])).text()
    (person,) = FaceWatchlist(app[WATCHLIST_KEY]).list_persons()

    removed = await client.post(f"/watchlists/faces/{person.id}/remove", data={"csrf_token": token})
    assert f"已删除布控人员 {person.id} 及其照片。" in await removed.text()
    again = await client.post(f"/watchlists/faces/{person.id}/remove", data={"csrf_token": token})
    assert f"没有找到布控人员 {person.id}" in await again.text()
    (record,) = app[AUDIT_LOG_KEY].query(1, 50, action="watchlist_face_remove").records
    assert record.detail == {"person_id": person.id, "name": "Barack Obama", "list_name": "vip",
                             "reason": "test enrolment"}


async def test_enrol_without_models_explained(admin, monkeypatch, tmp_path, caplog):
    app, client, token = admin
    monkeypatch.setenv("EDGE_MODEL_DIR", str(tmp_path / "no-models"))

    response = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", (FACES / "obama" / "obama_1.jpg").read_bytes(), "obama.jpg", name="Barack Obama",
        list_name="vip", reason="test enrolment"))

    assert response.status == 503
    text = await response.text()
    assert "无法添加布控人员：人脸模型 yunet_s_640 缺失或损坏" in text
    assert "edge models fetch yunet_s_640" in text
    assert 'value="Barack Obama"' in text
    assert FaceWatchlist(app[WATCHLIST_KEY]).list_persons() == []
    errors = [record for record in caplog.records if record.levelname == "ERROR" and "yunet_s_640" in record.message]
    assert len(errors) == 1


async def test_missing_models_warned_at_start(aiohttp_client, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EDGE_MODEL_DIR", str(tmp_path / "no-models"))
    await aiohttp_client(create_app(WebConfig(), tmp_path / "web", scrypt_params=FAST_SCRYPT))
    warnings = [record.message for record in caplog.records if record.levelname == "WARNING"]
    assert any("face enrolment models yunet_s_640, mobilefacenet_128d not found" in message for message in warnings)


async def test_no_model_warning_when_models_present(aiohttp_client, tmp_path, caplog):
    await aiohttp_client(create_app(WebConfig(), tmp_path / "web", scrypt_params=FAST_SCRYPT))
    assert not any("face enrolment models" in record.message for record in caplog.records)


LAYOUT_SCRIPT = """
const entries = document.querySelectorAll("#plate-entries tbody tr");
document.body.dataset.layout = JSON.stringify({
  scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  rowHeights: Array.from(entries, (row) => row.offsetHeight),
  selectWidth: document.querySelector("#filter-plates select").offsetWidth});
"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
async def test_long_list_name_keeps_layout(admin, tmp_path):
    app, client, _token = admin
    long_name = "长" * 100 + "x" * 100  # the maximum length the store accepts
    app[WATCHLIST_KEY].add_plate("京A12345", "case 1", long_name)
    html = await (await client.get("/watchlists/plates")).text()

    layout = measure_layout(html, tmp_path, LAYOUT_SCRIPT)

    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    assert max(layout["rowHeights"]) < 60, layout
    assert layout["selectWidth"] <= 320, layout


async def test_face_form_errors_in_chinese(admin):
    app, client, token = admin
    await enrol_obama(app, client, token)
    same_name = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", (FACES / "rose_leslie" / "rose_leslie_1.jpg").read_bytes(), "rose.jpg",
        name="Barack Obama", list_name="wanted", reason="another person"))
    missing = await client.post("/watchlists/faces", data=upload_form(
        token, "photo", (FACES / "rose_leslie" / "rose_leslie_1.jpg").read_bytes(), "rose.jpg",
        name=" ", list_name="wanted", reason=""))

    assert same_name.status == 400
    same_name_text = await same_name.text()
    assert "布控库“wanted”中已有人员 1“Barack Obama”" in same_name_text
    assert "already on list" not in same_name_text
    assert missing.status == 400
    assert "请填写：姓名、布控原因。" in await missing.text()
    assert len(FaceWatchlist(app[WATCHLIST_KEY]).list_persons()) == 1
