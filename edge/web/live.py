"""Live hits over WebSocket: each browser gets its own bounded queue, so a slow one never delays the others.

The feed intake thread hands each stored hit to `LiveHub.publish` through the event loop. The hub renders
the hit's table row once per language in use and puts it on every client's queue. A client whose queue is
full, or whose socket does not take a message within `SEND_TIMEOUT_S`, is disconnected and counted. Its
page reconnects on its own and reloads the latest hits, so nothing is lost for the investigator.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from edge.web.store import StoredHit

log = logging.getLogger(__name__)

# Rows a client may have waiting; a browser that falls this far behind is disconnected instead.
CLIENT_QUEUE_SIZE = 100
SEND_TIMEOUT_S = 5.0
HEARTBEAT_S = 20.0


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
    def __init__(self, render_row: Callable[[StoredHit, str], str]):
        """`render_row(hit, language)` returns the HTML of one table row."""
        self._render_row = render_row
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

    async def serve(self, request: web.Request, language: str, user: str) -> web.WebSocketResponse:
        """Run one WebSocket connection until the browser or the hub closes it."""
        websocket = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await websocket.prepare(request)
        client = LiveClient(websocket, language, user)
        self._clients.add(client)
        self.counters.connected += 1
        sender = asyncio.create_task(self._send_loop(client))
        try:
            # The page sends nothing; reading is still needed to see pings and the close.
            async for message in websocket:
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            sender.cancel()
        return websocket

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
