"""A TCP relay on 127.0.0.1 in front of a local server; fault proxies override how each direction is copied."""

from __future__ import annotations

import socket
import threading


class LocalRelay:
    """Accepts clients on a free port of 127.0.0.1 and connects each one to `upstream_port`.

    Subclasses override `forward_to_server` and `forward_to_client` to delay, stop or damage the bytes.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.connections = 0
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def forward_to_server(self, client: socket.socket, upstream: socket.socket) -> None:
        copy_until_closed(client, upstream)

    def forward_to_client(self, upstream: socket.socket, client: socket.socket) -> None:
        copy_until_closed(upstream, client)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            self.connections += 1
            self._sockets += [client, upstream]
            threading.Thread(target=self._run, args=(self.forward_to_server, client, upstream), daemon=True).start()
            threading.Thread(target=self._run, args=(self.forward_to_client, upstream, client), daemon=True).start()

    @staticmethod
    def _run(forward, source: socket.socket, target: socket.socket) -> None:
        try:
            forward(source, target)
        except OSError:
            pass
        finally:
            # Shutting both sockets down ends the opposite direction's copy as well.
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def copy_until_closed(source: socket.socket, target: socket.socket) -> None:
    while data := source.recv(65536):
        target.sendall(data)
