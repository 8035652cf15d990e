"""Live hits over WebSocket: each browser gets its own bounded queue, so a slow one never delays the others.

The feed intake thread hands each stored hit to `LiveHub.publish` through the event loop. The hub renders
the hit's table row once per language in use and puts it on every client's queue. A client whose queue is
full, or whose socket does not take a message within `SEND_TIMEOUT_S`, is disconnected and counted. Its
page reconnects on its own and reloads the latest hits, so nothing is lost for the investigator.

Each connection checks its login every `SESSION_CHECK_S`. When the session has ended (logout, expiry, a
disabled user or a changed password), the socket is closed with SESSION_ENDED_CODE and the page goes to
the login page, so no hit reaches a browser whose login is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from edge.web.store import StoredHit

log = logging.getLogger(__name__)

# Rows a client may have waiting; a browser that falls this far behind is disconnected instead.
CLIENT_QUEUE_SIZE = 100
SEND_TIMEOUT_S = 5.0
HEARTBEAT_S = 20.0
SESSION_CHECK_S = 5.0
# WebSocket close codes 4000-4999 are for applications; live.js sends the user to the login page on this one.
SESSION_ENDED_CODE = 4401


# eq=False keeps identity hashing, so clients can live in a set.
@dataclass(eq=False)
class LiveClient:
    websocket: web.WebSocketResponse
    language: str
    user: str
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE_SIZE))


@dataclass
class LiveCounters:
    connected: int = 0
    rows_sent: int = 0
    clients_dropped: int = 0


class LiveHub:
    def __init__(self, render_row: Callable[[StoredHit, str], str], session_check_s: float = SESSION_CHECK_S):
        """`render_row(hit, language)` returns the HTML of one table row."""
        self._render_row = render_row
        self.session_check_s = session_check_s
        self._clients: set[LiveClient] = set()
        self.counters = LiveCounters()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def publish(self, hit: StoredHit) -> None:
        """Queue a stored hit for every client; call on the event loop thread."""
        if not hit.topic.startswith("hit."):
            return
        rows: dict[str, str] = {}
        for client in list(self._clients):
            if client.language not in rows:
                rows[client.language] = json.dumps({"id": hit.id, "html": self._render_row(hit, client.language)})
            try:
                client.queue.put_nowait(rows[client.language])
            except asyncio.QueueFull:
                self._drop(client, "its queue of live hits is full")

    def _drop(self, client: LiveClient, reason: str) -> None:
        if client not in self._clients:
            return
        self._clients.discard(client)
        self.counters.clients_dropped += 1
        log.warning("live client of user %s disconnected: %s", client.user, reason)
        asyncio.ensure_future(client.websocket.close(code=1013, message=b"too slow; reconnect"))

    async def serve(self, request: web.Request, language: str, user: str,
                    session_alive: Callable[[], bool]) -> web.WebSocketResponse:
        """Run one WebSocket connection until the browser or the hub closes it, or its session ends.

        `session_alive()` returns whether the connection's login is still valid; it runs in a worker thread.
        """
        websocket = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await websocket.prepare(request)
        client = LiveClient(websocket, language, user)
        self._clients.add(client)
        self.counters.connected += 1
        tasks = [asyncio.create_task(self._send_loop(client)),
                 asyncio.create_task(self._watch_session(client, session_alive))]
        try:
            # The page sends nothing; reading is still needed to see pings and the close.
            async for message in websocket:
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            for task in tasks:
                task.cancel()
        return websocket

    async def _watch_session(self, client: LiveClient, session_alive: Callable[[], bool]) -> None:
        while True:
            await asyncio.sleep(self.session_check_s)
            try:
                if not await asyncio.to_thread(session_alive):
                    break
            except sqlite3.Error as error:
                # A busy or failing session store must not end the checks; the next one tries again.
                log.warning("live client of user %s: session check failed: %s", client.user, error)
        self._clients.discard(client)
        log.info("live client of user %s disconnected: the session ended", client.user)
        await client.websocket.close(code=SESSION_ENDED_CODE, message=b"session ended; log in again")

    async def _send_loop(self, client: LiveClient) -> None:
        while True:
            payload = await client.queue.get()
            try:
                await asyncio.wait_for(client.websocket.send_str(payload), SEND_TIMEOUT_S)
            except (asyncio.TimeoutError, ConnectionError) as error:
                self._drop(client, f"sending failed or timed out after {SEND_TIMEOUT_S} s ({error!r})")
                return
            self.counters.rows_sent += 1

    async def close(self) -> None:
        for client in list(self._clients):
            await client.websocket.close(code=1001, message=b"server shutting down")
        self._clients.clear()
