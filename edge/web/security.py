"""Sessions, login enforcement, CSRF checks, role checks and security headers for the web service.

`setup_security` must run before the app starts, after `setup_rendering`. It adds three
middlewares in this order: session lookup, login required, CSRF check. It also adds a
response-prepare hook that sets the security headers on every response, error pages and WebSocket
handshakes included.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from yarl import URL

from edge.web.audit import AUDIT_LOG_KEY, AuditLog, audit_request, database_path
from edge.web.auth import DEFAULT_SCRYPT, LoginRateLimiter, ROLES, SESSION_KEY, ScryptParams, Session, SessionStore, USER_KEY, UserStore
from edge.web.render import render, translator

__all__ = [
    "AUDIT_LOG_KEY",
    "HASH_EXECUTOR_KEY",
    "RATE_LIMITER_KEY",
    "SECURE_COOKIES_KEY",
    "SESSION_STORE_KEY",
    "USER_STORE_KEY",
    "is_public_path",
    "login_redirect",
    "require_role",
    "safe_next",
    "set_cookie",
    "setup_security",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "edge_session"
# Login forms have no session yet, so their CSRF token is a random cookie echoed in the form.
LOGIN_CSRF_COOKIE = "edge_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PUBLIC_PATHS = frozenset({"/login", "/healthz", "/lang"})
STATIC_PREFIX = "/static/"
# The watchlist API authenticates daemons with bearer tokens, so sessions and CSRF do not apply to it.
API_PREFIX = "/api/"
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# Requests that an open page makes by itself: the images in its rows (hit snapshots and crops, enrolled
# photos) and the row reload after the live socket reconnects. They check the session but do not
# restart its idle timer, so a live page left open does not keep an idle login alive.
BACKGROUND_PATH = re.compile(r"/hits/[^/]+/[a-z]+\.jpg|/watchlists/faces/photos/[^/]+\.jpg|/live/rows")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
MAX_NEXT_LENGTH = 2000

USER_STORE_KEY = web.AppKey("user_store", UserStore)
SESSION_STORE_KEY = web.AppKey("session_store", SessionStore)
RATE_LIMITER_KEY = web.AppKey("login_rate_limiter", LoginRateLimiter)
SECURE_COOKIES_KEY = web.AppKey("secure_cookies", bool)
# Password hashing runs here: two threads bound both the CPU and the memory (32 MiB per hash) of a login burst.
HASH_EXECUTOR_KEY = web.AppKey("password_hash_executor", ThreadPoolExecutor)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup_security(
    app: web.Application,
    data_dir: Path,
    session_ttl_s: float,
    secure_cookies: bool,
    *,
    clock: Callable[[], float] | None = None,
    rate_limiter: LoginRateLimiter | None = None,
    scrypt_params: ScryptParams = DEFAULT_SCRYPT,
) -> None:
    """Open the user, session and audit stores in `<data_dir>/web.sqlite3` and install the middlewares.

    `secure_cookies` adds the Secure flag to cookies; set it whenever users reach the service over
    HTTPS. `clock` (epoch seconds) and `rate_limiter` are for tests.
    """
    path = database_path(Path(data_dir))
    app[AUDIT_LOG_KEY] = AuditLog(path)
    app[USER_STORE_KEY] = UserStore(path, scrypt_params)
    app[SESSION_STORE_KEY] = SessionStore(path, session_ttl_s, clock or time.time)
    app[RATE_LIMITER_KEY] = rate_limiter or LoginRateLimiter(clock=clock or time.monotonic)
    app[SECURE_COOKIES_KEY] = secure_cookies
    app[HASH_EXECUTOR_KEY] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="password-hash")

    app.middlewares.extend([session_middleware, login_required_middleware, csrf_middleware])
    app.on_response_prepare.append(_add_security_headers)
    app.on_cleanup.append(_shutdown_executor)


async def _shutdown_executor(app: web.Application) -> None:
    app[HASH_EXECUTOR_KEY].shutdown(wait=True, cancel_futures=True)


def route_path(request: web.Request) -> str:
    # The router matches this form of the path (percent-encoded slashes stay encoded), so the
    # public-path checks must use it too.
    return request.rel_url.path_safe


def is_public_path(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(STATIC_PREFIX) or path.startswith(API_PREFIX)


def safe_next(value: str | None) -> str:
    """Return `value` when it is a path on this site, else '/'. Blocks open redirects such as //evil.example."""
    if not value or len(value) > MAX_NEXT_LENGTH:
        return "/"
    # Browsers read a backslash as a slash and drop tabs and line breaks, so '/\\evil.example' and
    # '/\t/evil.example' would leave the site.
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def wants_json(request: web.Request) -> bool:
    """Return True for WebSocket, XHR and JSON requests, which get status codes instead of redirects and pages."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return True
    if request.headers.get("X-Requested-With", "") == "XMLHttpRequest":
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def login_redirect(request: web.Request) -> web.HTTPFound:
    target = request.rel_url.path_qs if request.method in ("GET", "HEAD") else "/"
    return web.HTTPFound(str(URL.build(path="/login", query={"next": safe_next(target)})))


def error_response(request: web.Request, status: int, key: str, **fields: object) -> web.Response:
    """Return a page, or JSON for JSON requests, with the catalogue text `key` in the request's language."""
    message = translator(request)(key, **fields)
    if wants_json(request):
        return web.json_response({"error": key, "message": message}, status=status)
    return render(request, "forbidden.html", status=status, message=message)


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               path: str = "/", max_age: int | None = None) -> None:
    """Set an HttpOnly, SameSite=Strict cookie, Secure when the app was set up with secure_cookies."""
    response.set_cookie(name, value, path=path, max_age=max_age, httponly=True, samesite="Strict",
                        secure=request.app[SECURE_COOKIES_KEY])


def delete_cookie(response: web.StreamResponse, name: str, path: str = "/") -> None:
    response.del_cookie(name, path=path)


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set the request's SESSION_KEY and USER_KEY from the session cookie; both are None without a live session."""
    session: Session | None = None
    path = route_path(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token and not path.startswith(STATIC_PREFIX) and not path.startswith(API_PREFIX):
        refresh = not (request.method in ("GET", "HEAD") and BACKGROUND_PATH.fullmatch(path))
        session = request.app[SESSION_STORE_KEY].lookup(token, refresh=refresh)
    request[SESSION_KEY] = session
    request[USER_KEY] = session.user if session is not None else None
    return await handler(request)


@web.middleware
async def login_required_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request[USER_KEY] is None and not is_public_path(route_path(request)):
        if wants_json(request):
            return error_response(request, 401, "auth.login_required")
        raise login_redirect(request)
    return await handler(request)


async def _supplied_csrf_token(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in FORM_TYPES:
        # NOTE: this reads the whole form. Upload handlers must then use request.post(), which returns
        # the cached form, because request.multipart() would find the body consumed.
        form = await request.post()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def tokens_match(supplied: str, expected: str) -> bool:
    if not supplied or not expected:
        return False
    return hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8"))


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reject state-changing requests whose CSRF token is missing or wrong, with 403."""
    if request.method not in UNSAFE_METHODS or route_path(request).startswith(API_PREFIX):
        return await handler(request)
    session: Session | None = request[SESSION_KEY]
    expected = session.csrf_token if session is not None else request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not tokens_match(await _supplied_csrf_token(request), expected):
        log.warning("CSRF token missing or wrong on %s %s from %s", request.method, request.path, request.remote)
        return error_response(request, 403, "error.csrf")
    return await handler(request)


def require_role(role: str) -> Callable[[Handler], Handler]:
    """Decorate a handler so that users below `role` get a 403 page (JSON for JSON requests)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")

    def decorator(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            user = request.get(USER_KEY)
            if user is None:
                if wants_json(request):
                    return error_response(request, 401, "auth.login_required")
                raise login_redirect(request)
            if not user.can(role):
                log.warning("user %s (%s) denied %s %s, which needs %s", user.name, user.role, request.method,
                            request.path, role)
                # Attempted changes go to the audit log too. Denied page views are only logged, because a
                # link that a lower role follows by mistake is not worth an administrator's attention.
                if request.method in UNSAFE_METHODS:
                    audit_request(request, "forbidden", method=request.method,
                                  path=request.path[:MAX_NEXT_LENGTH], role=user.role, required_role=role)
                t = translator(request)
                return error_response(request, 403, "error.forbidden", role=t(f"role.{user.role}"),
                                      needed=t(f"role.{role}"))
            return await handler(request)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded

    return decorator


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    # Pages show personal data, so no shared or browser cache may keep them. Static files may be cached.
    if not request.path.startswith(STATIC_PREFIX):
        headers["Cache-Control"] = "no-store"
