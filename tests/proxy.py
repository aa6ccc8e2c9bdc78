"""A TCP proxy for fault tests: each connection to ``port`` is relayed to the
target, one thread per direction; a subclass decides what each direction
passes on (``up``: client to server, ``down``: server to client)."""

from __future__ import annotations

import contextlib
import socket
import threading


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.before_connect()
            server = socket.create_connection(self.target)
            state = self.connection()
            threading.Thread(target=self._relay, args=(self.up, client, server, state), daemon=True).start()
            threading.Thread(target=self._relay, args=(self.down, server, client, state), daemon=True).start()

    def before_connect(self) -> None:
        """Runs before each new connection to the target (may wait)."""

    def connection(self) -> object:
        """State shared by the two directions of one connection."""
        return None

    def up(self, src: socket.socket, dst: socket.socket, state: object) -> None:
        while data := src.recv(65536):
            dst.sendall(data)

    def down(self, src: socket.socket, dst: socket.socket, state: object) -> None:
        while data := src.recv(65536):
            dst.sendall(data)

    @staticmethod
    def _relay(direction: object, src: socket.socket, dst: socket.socket, state: object) -> None:
        try:
            direction(src, dst, state)  # type: ignore[operator]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.listener.close()
