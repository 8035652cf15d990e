"""Camera status per box, from the daemons' `health` messages, and the unauthenticated health probe."""

from __future__ import annotations

import asyncio

from aiohttp import web

from edge.web.keys import HIT_STORE_KEY, INTAKE_KEY
from edge.web.render import render


async def cameras_page(request: web.Request) -> web.Response:
    cameras = await asyncio.to_thread(request.app[HIT_STORE_KEY].camera_status)
    intake = request.app.get(INTAKE_KEY)
    sources = intake.status() if intake is not None else []
    return render(request, "cameras.html", cameras=cameras, sources=sources)


async def health_probe(_request: web.Request) -> web.Response:
    # Open to load balancers and systemd checks, so it reports liveness only and nothing about hits.
    return web.json_response({"status": "ok"})


def add_camera_routes(app: web.Application) -> None:
    app.router.add_get("/cameras", cameras_page)
    app.router.add_get("/healthz", health_probe)
