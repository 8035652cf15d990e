"""Login, logout, language switch, user administration and the audit log page."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import secrets
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web
from yarl import URL

from edge.config.web import LANGUAGES
from edge.web.audit import ACTIONS, AUDIT_LOG_KEY, audit_request
from edge.web.audit_format import format_detail
from edge.web.auth import (
    END_PASSWORD_CHANGED,
    END_REASONS,
    MAX_NAME_CHARS,
    ROLES,
    SESSION_KEY,
    USER_KEY,
    User,
    UserError,
)
from edge.web.i18n import LANGUAGE_COOKIE
from edge.web.render import page_number, path_id, render, translator
from edge.web.security import (
    HASH_EXECUTOR_KEY,
    LOGIN_CSRF_COOKIE,
    RATE_LIMITER_KEY,
    SESSION_COOKIE,
    SESSION_STORE_KEY,
    USER_STORE_KEY,
    delete_cookie,
    require_role,
    safe_next,
    set_cookie,
)

log = logging.getLogger(__name__)

LANGUAGE_COOKIE_MAX_AGE_S = 365 * 24 * 3600
AUDIT_PAGE_SIZE = 50
MAX_NAME_FIELD = 200
# Notices shown on the users page after a change. Each is also the last part of its catalogue key.
USER_NOTICES = ("added", "role", "password", "disabled", "enabled")

Result = TypeVar("Result")


def add_auth_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/lang", switch_language)
    app.router.add_get("/users", users_page)
    app.router.add_post("/users", user_add)
    app.router.add_post(r"/users/{user_id:\d+}/role", user_role)
    app.router.add_post(r"/users/{user_id:\d+}/password", user_password)
    app.router.add_post(r"/users/{user_id:\d+}/disable", user_disable)
    app.router.add_get("/audit", audit_page)


def see_other(location: str) -> web.Response:
    """Return a 303 redirect as a plain response, so that cookies can be set on it."""
    return web.Response(status=303, headers={"Location": location})


async def run_hashing(request: web.Request, function: Callable[..., Result], *args: object) -> Result:
    """Run a store call that hashes a password on the hashing threads, keeping the event loop free."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[HASH_EXECUTOR_KEY], function, *args)


# --- Login and logout -------------------------------------------------------------------------------


def _login_response(request: web.Request, next_path: str, name: str = "", error: str = "",
                    status: int = 200, logged_out: str = "") -> web.Response:
    login_csrf_token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(request, "login.html", status=status, next_path=next_path, name=name, error=error,
                      logged_out=logged_out, login_csrf_token=login_csrf_token)
    set_cookie(request, response, LOGIN_CSRF_COOKIE, login_csrf_token, path="/login")
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    next_path = safe_next(request.query.get("next"))
    if request[USER_KEY] is not None:
        raise web.HTTPFound(next_path)
    return _login_response(request, next_path, logged_out=_logged_out_reason(request))


def _logged_out_reason(request: web.Request) -> str:
    """Return the END_REASONS code for why the user was logged out, or "" to show no notice.

    An explicit `reason` query parameter counts only when it is a known code, so a link cannot put its
    own text on the page. Without one, a session cookie that no longer has a live session gives the
    store's reason.
    """
    reason = request.query.get("reason", "")
    if reason in END_REASONS:
        return reason
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        return request.app[SESSION_STORE_KEY].end_reason(token)
    return ""


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", ""))[:MAX_NAME_FIELD]
    password = str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "")))
    limiter = request.app[RATE_LIMITER_KEY]
    t = translator(request)

    # Throttled attempts are not checked, so a correct password gets no hint during the wait. They are
    # audited, because repeated attempts during a block are what an administrator looks for.
    wait_s = limiter.retry_after_s(request.remote, name)
    if wait_s > 0:
        seconds = math.ceil(wait_s)
        _audit_login_failed(request, name, throttled=True)
        log.warning("login for %r from %s throttled for %d s", name, request.remote, seconds)
        response = _login_response(request, next_path, name, t("auth.rate_limited", seconds=seconds), status=429)
        response.headers["Retry-After"] = str(seconds)
        return response

    user = await run_hashing(request, request.app[USER_STORE_KEY].authenticate, name, password)
    if user is None:
        limiter.record_failure(request.remote, name)
        _audit_login_failed(request, name)
        log.info("login failed for %r from %s", name, request.remote)
        return _login_response(request, next_path, name, t("auth.invalid_credentials"))

    limiter.clear_name(name)
    sessions = request.app[SESSION_STORE_KEY]
    # A new token on every login stops session fixation, so any session the browser had is ended.
    if request[SESSION_KEY] is not None:
        sessions.delete(request.cookies[SESSION_COOKIE])
    token, _ = sessions.create(user)
    request.app[AUDIT_LOG_KEY].record(user.name, "login", request.remote, {"user_id": user.id})
    log.info("user %s logged in from %s", user.name, request.remote)

    response = see_other(next_path)
    set_cookie(request, response, SESSION_COOKIE, token)
    delete_cookie(response, LOGIN_CSRF_COOKIE, path="/login")
    return response


def _audit_login_failed(request: web.Request, name: str, **detail: object) -> None:
    # The user column contains the name as typed, whether or not such a user exists, so that filtering the
    # audit log by a user name also finds the failed attempts on it.
    user = name[:MAX_NAME_CHARS] or None
    request.app[AUDIT_LOG_KEY].record(user, "login_failed", request.remote, {"name": name, **detail})


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSION_STORE_KEY].delete(request.cookies[SESSION_COOKIE])
    audit_request(request, "logout")
    response = see_other("/login")
    delete_cookie(response, SESSION_COOKIE)
    return response


async def switch_language(request: web.Request) -> web.StreamResponse:
    language = request.query.get("to", "")
    response = see_other(safe_next(request.query.get("next")))
    if language in LANGUAGES:
        set_cookie(request, response, LANGUAGE_COOKIE, language, max_age=LANGUAGE_COOKIE_MAX_AGE_S)
    return response


# --- Users --------------------------------------------------------------------------------------------


def _users_response(request: web.Request, error: str = "", status: int = 200,
                    form: dict[str, str] | None = None) -> web.Response:
    """Render the users page; `form` refills the add-user form's name and role after a rejected add."""
    notice = request.query.get("notice", "")
    return render(
        request, "users.html", status=status,
        users=request.app[USER_STORE_KEY].list_users(),
        roles=ROLES,
        notice=notice if notice in USER_NOTICES else "",
        error=error,
        form=form or {},
    )


def _user_error_response(request: web.Request, error: UserError,
                         form: dict[str, str] | None = None) -> web.Response:
    log.info("user change by %s rejected: %s", request[USER_KEY].name, error)
    return _users_response(request, translator(request)(error.key, **error.fields), status=400, form=form)


def _target_id(request: web.Request) -> int:
    return path_id(request, "user_id")


@require_role("admin")
async def users_page(request: web.Request) -> web.StreamResponse:
    return _users_response(request)


@require_role("admin")
async def user_add(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    actor: User = request[USER_KEY]
    try:
        await run_hashing(request, request.app[USER_STORE_KEY].add_user, str(form.get("name", "")),
                          str(form.get("password", "")), str(form.get("role", "")), actor.name, request.remote)
    except UserError as error:
        # The password is not sent back, so the browser does not keep it in the page.
        refill = {"name": str(form.get("name", ""))[:MAX_NAME_FIELD], "role": str(form.get("role", ""))}
        return _user_error_response(request, error, refill)
    raise web.HTTPSeeOther("/users?notice=added")


@require_role("admin")
async def user_role(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    actor: User = request[USER_KEY]
    try:
        request.app[USER_STORE_KEY].set_role(_target_id(request), str(form.get("role", "")), actor.name,
                                             request.remote)
    except UserError as error:
        return _user_error_response(request, error)
    raise web.HTTPSeeOther("/users?notice=role")


@require_role("admin")
async def user_password(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    actor: User = request[USER_KEY]
    target_id = _target_id(request)
    try:
        await run_hashing(request, request.app[USER_STORE_KEY].set_password, target_id,
                          str(form.get("password", "")), actor.name, request.remote)
    except UserError as error:
        return _user_error_response(request, error)
    if target_id == actor.id:
        # The change ended this session as well, so the admin logs in again with the new password.
        raise web.HTTPSeeOther(f"/login?reason={END_PASSWORD_CHANGED}")
    raise web.HTTPSeeOther("/users?notice=password")


@require_role("admin")
async def user_disable(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    actor: User = request[USER_KEY]
    disabled = form.get("disabled", "1") != "0"
    try:
        request.app[USER_STORE_KEY].set_disabled(_target_id(request), disabled, actor.name, request.remote)
    except UserError as error:
        return _user_error_response(request, error)
    raise web.HTTPSeeOther(f"/users?notice={'disabled' if disabled else 'enabled'}")


# --- Audit log --------------------------------------------------------------------------------------


@require_role("admin")
async def audit_page(request: web.Request) -> web.StreamResponse:
    user_filter = request.query.get("user", "").strip()[:MAX_NAME_FIELD]
    action_filter = request.query.get("action", "")
    if action_filter not in ACTIONS:
        action_filter = ""
    page = request.app[AUDIT_LOG_KEY].query(page_number(request), AUDIT_PAGE_SIZE,
                                            user=user_filter or None, action=action_filter or None)

    def page_link(number: int) -> str:
        query = {"page": str(number)}
        if user_filter:
            query["user"] = user_filter
        if action_filter:
            query["action"] = action_filter
        return str(URL.build(path="/audit", query=query))

    if page.page > page.pages:
        raise web.HTTPFound(page_link(page.pages))  # a page number past the end, from an old link

    return render(request, "audit.html", page=page, actions=ACTIONS, user_filter=user_filter,
                  action_filter=action_filter, page_link=page_link,
                  format_detail=functools.partial(format_detail, translator(request)))
