"""A small web app with the real security stack, users of each role and helpers to log in, for the auth tests."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from edge.web.audit import audit_request
from edge.web.auth import LoginRateLimiter, ScryptParams
from edge.web.render import render, setup_rendering
from edge.web.routes_auth import add_auth_routes
from edge.web.security import USER_STORE_KEY, require_role, setup_security

# The lowest cost ScryptParams accepts, so that each test logs in quickly; one test covers the default cost.
FAST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)
PASSWORDS = {
    "viewer": "viewer-password-1",
    "investigator": "investigator-password-1",
    "admin": "admin-password-1",
}
TOKEN_PATTERN = re.compile(r'name="csrf_token" value="([^"]*)"')
PAGE_TOKEN_PATTERN = re.compile(r'data-csrf="([^"]*)"')


class FakeClock:
    """A clock that moves only when a test advances it; used for both epoch and monotonic time."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def page(request: web.Request) -> web.StreamResponse:
    return render(request, "base.html")


@require_role("investigator")
async def export(request: web.Request) -> web.StreamResponse:
    audit_request(request, "export", rows=3)
    return render(request, "base.html")


@require_role("investigator")
async def acknowledge(request: web.Request) -> web.StreamResponse:
    return web.json_response({"acknowledged": True})


@require_role("admin")
async def admin_only(request: web.Request) -> web.StreamResponse:
    return render(request, "base.html")


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def api_echo(request: web.Request) -> web.StreamResponse:
    return web.json_response({"method": request.method})


@require_role("viewer")
async def live_socket(request: web.Request) -> web.StreamResponse:
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    await socket.send_str("hello")
    await socket.close()
    return socket


def build_app(data_dir: Path, clock: FakeClock, secure_cookies: bool = False,
              limiter: LoginRateLimiter | None = None, session_ttl_s: float = 3600.0) -> web.Application:
    app = web.Application()
    setup_rendering(app, "zh-CN", "Asia/Shanghai")
    setup_security(app, data_dir, session_ttl_s, secure_cookies, clock=clock,
                   rate_limiter=limiter or LoginRateLimiter(clock=clock), scrypt_params=FAST_SCRYPT)
    add_auth_routes(app)
    app.router.add_get("/", page)
    app.router.add_get("/search", require_role("viewer")(page))
    app.router.add_get("/export", export)
    app.router.add_post("/acknowledge", acknowledge)
    app.router.add_get("/watchlists", admin_only)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/api/echo", api_echo)
    app.router.add_get("/live/ws", live_socket)
    static_dir = data_dir / "static"
    static_dir.mkdir(exist_ok=True)
    (static_dir / "style.css").write_text("body { margin: 0; }\n")
    app.router.add_static("/static/", static_dir)
    for role, password in PASSWORDS.items():
        app[USER_STORE_KEY].add_user(role, password, role, actor="test-setup")
    return app


async def login_form_token(client: TestClient, next_path: str | None = None) -> str:
    response = await client.get("/login", params={"next": next_path} if next_path else None)
    text = await response.text()
    match = TOKEN_PATTERN.search(text)
    assert match, f"no csrf_token field in the login page: {text[:300]}"
    return match.group(1)


async def log_in(client: TestClient, name: str, password: str | None = None, next_path: str = "/"):
    """Post the login form with a valid login CSRF token; return the response without following redirects."""
    token = await login_form_token(client)
    form = {"name": name, "password": password if password is not None else PASSWORDS[name],
            "next": next_path, "csrf_token": token}
    return await client.post("/login", data=form, allow_redirects=False)


async def page_csrf_token(client: TestClient) -> str:
    response = await client.get("/")
    assert response.status == 200, f"GET / returned {response.status}; is the client logged in?"
    match = PAGE_TOKEN_PATTERN.search(await response.text())
    assert match and match.group(1), "no CSRF token in the page"
    return match.group(1)
