"""The user's own account page: change the password after confirming the current one."""

from __future__ import annotations

import logging
import math

from aiohttp import web

from edge.web.audit import audit_request
from edge.web.auth import END_PASSWORD_CHANGED, USER_KEY, UserError
from edge.web.render import render, translator
from edge.web.routes_auth import run_hashing
from edge.web.security import RATE_LIMITER_KEY, USER_STORE_KEY

log = logging.getLogger(__name__)


async def account_page(request: web.Request) -> web.StreamResponse:
    return render(request, "account.html", error=None)


async def change_password(request: web.Request) -> web.StreamResponse:
    t = translator(request)
    user = request[USER_KEY]
    form = await request.post()
    current = str(form.get("current_password", ""))
    new = str(form.get("new_password", ""))
    if new != str(form.get("repeat_password", "")):
        return render(request, "account.html", status=400, error=t("account.passwords_differ"))
    if new == current:
        return render(request, "account.html", status=400, error=t("account.same_password"))

    # The current password is checked like a login, so a left-open browser cannot be used to guess it.
    # Failures count towards the login block of the user, and both kinds are audited like failed logins.
    limiter = request.app[RATE_LIMITER_KEY]
    wait_s = limiter.retry_after_s(request.remote, user.name)
    if wait_s > 0:
        seconds = math.ceil(wait_s)
        audit_request(request, "password_change_failed", throttled=True)
        log.warning("password change by %s from %s throttled for %d s", user.name, request.remote, seconds)
        response = render(request, "account.html", status=429, error=t("account.throttled", seconds=seconds))
        response.headers["Retry-After"] = str(seconds)
        return response
    users = request.app[USER_STORE_KEY]
    if await run_hashing(request, users.authenticate, user.name, current) is None:
        limiter.record_failure(request.remote, user.name)
        audit_request(request, "password_change_failed")
        log.info("password change by %s rejected: wrong current password", user.name)
        return render(request, "account.html", status=400, error=t("account.wrong_current"))
    try:
        await run_hashing(request, users.set_password, user.id, new, user.name, request.remote)
    except UserError as error:
        return render(request, "account.html", status=400, error=t(error.key, **error.fields))
    # Changing the password ended every session of the user, this one too.
    raise web.HTTPSeeOther(f"/login?reason={END_PASSWORD_CHANGED}")


def add_account_routes(app: web.Application) -> None:
    app.router.add_get("/account", account_page)
    app.router.add_post("/account/password", change_password)
