"""A TCP relay the drills put between the app and PostgreSQL or Redis, to break the path.

``freeze()`` stops relaying bytes and lets new connections in without relaying them (a
network that silently drops traffic: nothing is refused, nothing answers, as when a
firewall or a stalled NAT swallows packets); ``thaw()`` relays again. ``close()`` stops
listening and closes every relayed connection (the peer is gone: connections reset,
new ones refused). No library offers a freezable relay small enough to start from a test;
toxiproxy would be another daemon and binary to install.
"""

from __future__ import annotations

import select
import socket
import threading

from stevedores.testing import free_port


class TcpProxy:
    """Relay ``127.0.0.1:<port>`` to ``target`` (host, port) until closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._running = threading.Event()
        self._relaying = threading.Event()
        self._relaying.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def start(self) -> TcpProxy:
        """Listen and relay."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self._listener = listener
        self._running.set()
        threading.Thread(target=self._accept, daemon=True, name=f"tcp-proxy-{self.port}").start()
        return self

    def freeze(self) -> None:
        """Stop relaying (connections stay open, bytes wait); new connections are accepted and left waiting."""
        self._relaying.clear()

    def thaw(self) -> None:
        """Relay again."""
        self._relaying.set()

    def close(self) -> None:
        """Stop listening and close every connection (refused and reset from now on)."""
        self._running.clear()
        self._relaying.set()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        if self._listener is not None:
            sockets.append(self._listener)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while self._running.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        self._relaying.wait()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets.update((client, upstream))
        peers = {client: upstream, upstream: client}
        try:
            while self._running.is_set():
                if not self._relaying.wait(0.2):
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    if not self._relaying.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                sock.close()
            with self._lock:
                self._sockets.difference_update((client, upstream))
