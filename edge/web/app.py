"""The web service: app factory, background feed intake and retention, and `edge web`."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import zmq
from aiohttp import web

from edge.config.web import WebConfig
from edge.watchlist.store import WatchlistStore
from edge.web.auth import DEFAULT_SCRYPT, ScryptParams
from edge.web.intake import FeedIntake
from edge.web.keys import CONFIG_KEY, HIT_STORE_KEY, INTAKE_KEY, LIVE_HUB_KEY, WATCHLIST_KEY
from edge.web.live import LiveHub
from edge.web.camera_names import CameraNames
from edge.web.render import TEMPLATES_KEY, render_fragment, setup_rendering
from edge.web.routes_account import add_account_routes
from edge.web.routes_auth import add_auth_routes
from edge.web.routes_cameras import add_camera_routes
from edge.web.routes_faces import add_face_routes, add_face_too_large_page
from edge.web.routes_hits import add_hit_routes
from edge.web.routes_watchlists import MAX_REQUEST_BYTES, add_watchlist_routes, import_too_large_page
from edge.web.security import USER_STORE_KEY, error_response, setup_security
from edge.web.store import HitStore
from edge.web.watchlist_api import add_watchlist_api_routes

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
WATCHLIST_DATABASE = "watchlists.sqlite"
BOOTSTRAP_ADMIN = "admin"
MIB = 1024 * 1024
# Upload forms that show their own page, with the error above the form, for an upload over MAX_REQUEST_BYTES.
TOO_LARGE_PAGES = {"/watchlists/plates/import": import_too_large_page, "/watchlists/faces": add_face_too_large_page}


def create_app(config: WebConfig, data_dir: Path, zmq_context: zmq.Context | None = None,
               scrypt_params: ScryptParams = DEFAULT_SCRYPT) -> web.Application:
    """Build the app; the feed intake and retention start with the app and stop at its cleanup.

    Tests pass cheaper `scrypt_params` so that logging in many times stays fast.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[CONFIG_KEY] = config
    setup_rendering(app, config.default_language, config.timezone)
    setup_security(app, data_dir, config.session_ttl_s, config.secure_cookies, scrypt_params=scrypt_params)
    # Outermost, because the CSRF check already reads the body and so meets an oversized upload first.
    app.middlewares.insert(0, error_page_middleware)
    app[HIT_STORE_KEY] = HitStore(data_dir)
    app[WATCHLIST_KEY] = WatchlistStore(data_dir / WATCHLIST_DATABASE)
    app[TEMPLATES_KEY].globals["camera_label"] = CameraNames(app[HIT_STORE_KEY]).label
    app[LIVE_HUB_KEY] = LiveHub(lambda hit, language: render_fragment(app, "_hit_row.html", language, hit=hit))

    add_auth_routes(app)
    add_account_routes(app)
    add_hit_routes(app)
    add_watchlist_routes(app)
    add_face_routes(app)
    add_camera_routes(app)
    add_watchlist_api_routes(app, app[WATCHLIST_KEY], config.api_tokens)
    app.router.add_static("/static", STATIC_DIR)

    app.cleanup_ctx.append(lambda app: _feed_intake(app, zmq_context))
    app.cleanup_ctx.append(_retention)
    app.on_shutdown.append(lambda app: app[LIVE_HUB_KEY].close())
    app.on_cleanup.append(lambda app: asyncio.to_thread(app[HIT_STORE_KEY].close))
    return app


@web.middleware
async def error_page_middleware(request: web.Request, handler):
    """Return a page in the user's language for an oversized upload (413), an unknown path (404), a
    method that the path does not take (405), such as a form's POST address opened with GET, and a
    failed handler (500)."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        page = TOO_LARGE_PAGES.get(request.path) if request.method == "POST" else None
        if page is not None:
            response = await page(request)
        else:
            response = error_response(request, 413, "error.too_large")
        # The rest of the body is not read, so the connection cannot carry another request.
        response.force_close()
        return response
    except web.HTTPNotFound:
        return error_response(request, 404, "error.not_found")
    except web.HTTPMethodNotAllowed as error:
        if request.method in ("GET", "HEAD"):
            response = error_response(request, 405, "error.form_only")
        else:
            response = error_response(request, 405, "error.method_not_allowed", method=request.method)
        response.headers["Allow"] = error.headers["Allow"]
        return response
    except web.HTTPException:
        raise
    except Exception:
        # A bug: the user gets the app's page with its navigation instead of aiohttp's bare text.
        log.exception("%s %s failed", request.method, request.path)
        return error_response(request, 500, "error.internal")


async def _feed_intake(app: web.Application, zmq_context: zmq.Context | None) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    hub = app[LIVE_HUB_KEY]
    intake = FeedIntake(app[CONFIG_KEY].feeds, app[HIT_STORE_KEY],
                        on_stored=lambda hit: loop.call_soon_threadsafe(hub.publish, hit), context=zmq_context)
    app[INTAKE_KEY] = intake
    intake.start()
    yield
    await asyncio.to_thread(intake.close)


async def _retention(app: web.Application) -> AsyncIterator[None]:
    retention = app[CONFIG_KEY].retention
    store = app[HIT_STORE_KEY]
    stopping = asyncio.Event()

    async def run_until_stopped() -> None:
        while not stopping.is_set():
            try:
                await asyncio.to_thread(store.apply_retention, retention.days, retention.max_mb * MIB)
            except Exception:  # noqa: BLE001 - one failed pass must not end retention for good
                log.exception("retention pass failed; retrying in %.0f s", retention.check_interval_s)
            try:
                await asyncio.wait_for(stopping.wait(), retention.check_interval_s)
            except asyncio.TimeoutError:
                pass

    task = asyncio.create_task(run_until_stopped())
    yield
    # Waiting, instead of cancelling, lets a pass in progress finish before the store closes under it.
    stopping.set()
    await task


def bootstrap_admin(app: web.Application) -> str | None:
    """Create user 'admin' with a random password when no user exists; return the password, else None."""
    users = app[USER_STORE_KEY]
    if users.list_users():
        return None
    password = secrets.token_urlsafe(12)
    users.add_user(BOOTSTRAP_ADMIN, password, "admin", actor="bootstrap")
    return password


def run_web(config: WebConfig, data_dir: Path) -> int:
    app = create_app(config, data_dir)
    if config.bootstrap_admin:
        password = bootstrap_admin(app)
        if password is not None:
            # Printed once, on standard output only: the log may be kept or shipped elsewhere.
            print(f"Created user '{BOOTSTRAP_ADMIN}' with password: {password}", flush=True)
            print("Change it on the My account page (/account) after logging in; it is not shown again.", flush=True)
    return asyncio.run(_serve(app, config, data_dir))


async def _serve(app: web.Application, config: WebConfig, data_dir: Path) -> int:
    """Serve until SIGINT or SIGTERM; return 2 when the address cannot be bound."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.listen_host, config.listen_port).start()
    except OSError as error:
        log.error("cannot listen on %s:%d: %s; stop the process that uses the port or change listen_port",
                  config.listen_host, config.listen_port, error.strerror or error)
        await runner.cleanup()
        return 2
    log.info("web service listening on http://%s:%d/ with %d feed(s), data in %s",
             config.listen_host, config.listen_port, len(config.feeds), data_dir)
    await stop.wait()
    log.info("web service stopping")
    await runner.cleanup()
    return 0
