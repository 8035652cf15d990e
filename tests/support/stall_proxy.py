"""A TCP proxy on 127.0.0.1 that can stop forwarding while keeping connections open.

It plays a camera that completed the RTSP handshake and then went silent: the socket stays
connected, but no bytes arrive.
"""

from __future__ import annotations

import socket
import threading

from tests.support.relay import LocalRelay


class StallProxy(LocalRelay):
    def __init__(self, upstream_port: int):
        self.flowing = threading.Event()
        self.flowing.set()
        super().__init__(upstream_port)

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        super().close()
        self.flowing.set()

    def forward_to_server(self, source: socket.socket, target: socket.socket) -> None:
        self._pump(source, target)

    def forward_to_client(self, source: socket.socket, target: socket.socket) -> None:
        self._pump(source, target)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while not self.closed:
            # While stalled, nothing is read, so nothing reaches the other side.
            self.flowing.wait()
            data = source.recv(65536)
            if not data:
                break
            self.flowing.wait()
            target.sendall(data)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte: a camera that hangs during the handshake."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(client)

    def close(self) -> None:
        self.listener.close()
        for sock in self.accepted:
            sock.close()
