"""The language switch on pages returned by a form POST, and the error page for a method that a path does not take."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from aiohttp import FormData

from edge.config.web import WebConfig
from edge.web.app import create_app
from edge.web.keys import HIT_STORE_KEY
from edge.web.security import USER_STORE_KEY
from tests.web.auth_support import FAST_SCRYPT, PASSWORDS, log_in, page_csrf_token
from tests.web.test_app import plate_message

BAD_ROWS_CSV = "pattern,reason,list_name,max_edits\n京A12345,,stolen,0\n".encode("utf-8")


@pytest.fixture
async def admin(aiohttp_client, tmp_path):
    app = create_app(WebConfig(), tmp_path / "web", scrypt_params=FAST_SCRYPT)
    for role, password in PASSWORDS.items():
        app[USER_STORE_KEY].add_user(role, password, role, actor="test-setup")
    app[HIT_STORE_KEY].add(plate_message(1))
    client = await aiohttp_client(app)
    await log_in(client, "admin")
    return app, client, await page_csrf_token(client)


def switch_link(page: str) -> str:
    match = re.search(r'<a class="lang" href="([^"]+)"', page)
    assert match, "no language switch on the page"
    return match.group(1).replace("&amp;", "&")


def csv_upload(token: str) -> FormData:
    form = FormData()
    form.add_field("csrf_token", token)
    form.add_field("file", BAD_ROWS_CSV, filename="list.csv", content_type="text/csv")
    return form


# Each form POST that returns a page, its status, and the GET page that its language switch must open.
FORM_POSTS = [
    ("/watchlists/plates/import", csv_upload, 200, "/watchlists/plates", "Plate watchlist"),
    ("/account/password", lambda token: {"csrf_token": token, "current_password": "wrong-password-9",
                                         "new_password": "new-password-22", "repeat_password": "new-password-22"},
     400, "/account", "My account"),
    ("/hits/1/ack", lambda token: {"csrf_token": token, "note": "x" * 2001}, 400, "/hits/1", "Plate watchlist hit"),
    ("/users/1/role", lambda token: {"csrf_token": token, "role": "superuser"}, 400, "/users", "Users"),
    ("/watchlists/plates", lambda token: {"csrf_token": token, "pattern": "", "list_name": "l", "reason": "r",
                                          "max_edits": "0"}, 400, "/watchlists/plates", "Plate watchlist"),
]


@pytest.mark.parametrize("post_path, form, status, page_path, english_text", FORM_POSTS)
async def test_switch_after_post_opens_page(admin, post_path, form, status, page_path, english_text):
    _app, client, token = admin
    response = await client.post(post_path, data=form(token))
    assert response.status == status, await response.text()
    link = switch_link(await response.text())

    redirect = await client.get(link, allow_redirects=False)
    assert redirect.status == 303
    assert urllib.parse.unquote(redirect.headers["Location"]) == page_path

    page = await client.get(link)
    assert page.status == 200
    assert page.url.path == page_path
    assert english_text in await page.text()


async def test_form_address_opened_with_get(admin):
    _app, client, _token = admin
    for path, page_path in (("/account/password", "/account"), ("/watchlists/plates/import", "/watchlists/plates"),
                            ("/users/1/role", "/users")):
        response = await client.get(path)
        assert response.status == 405, path
        assert response.headers["Allow"] == "POST", path
        text = await response.text()
        assert "此地址只用于提交表单，不能直接打开。" in text, path
        assert '<link rel="stylesheet" href="/static/style.css">' in text, path
        assert urllib.parse.unquote(switch_link(text)).endswith(f"next={page_path}"), path


async def test_wrong_method_page_in_english(admin):
    _app, client, token = admin
    client.session.cookie_jar.update_cookies({"lang": "en"})
    response = await client.put("/search", data={"csrf_token": token})
    assert response.status == 405
    text = await response.text()
    assert "This address does not accept PUT requests." in text
    assert "Method Not Allowed" not in text


async def test_unknown_post_path_switches_to_parent(admin):
    _app, client, token = admin
    response = await client.post("/watchlists/plates/nothing/here", data={"csrf_token": token})
    assert response.status == 404
    assert urllib.parse.unquote(switch_link(await response.text())).endswith("next=/watchlists/plates")
