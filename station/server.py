"""The station served over HTTPS by gunicorn, the production WSGI server.

One worker process with threads: the access log is a single hash chain, written by one
process (a second worker would fork the chain), and playback streams take a thread each
while they run. The certificate is the dock CA's (station.tls).
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from station.app import create_app
from station.settings import StationSettings
from station.tls import server_certificate

log = logging.getLogger(__name__)


class StationServer(BaseApplication):
    def __init__(self, settings: StationSettings, threads: int = 8,
                 on_ready: Any = None) -> None:
        self.settings = settings
        self.threads = threads
        self.on_ready = on_ready
        self.cert = server_certificate(settings.dock_dir, (settings.host, *settings.names))
        super().__init__()

    def load_config(self) -> None:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        options = {
            "bind": f"{host}:{self.settings.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": self.threads,
            "certfile": str(self.cert.cert),
            "keyfile": str(self.cert.key),
            "timeout": 120,  # a long playback keeps its worker thread busy, not stuck
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
        }
        for key, value in options.items():
            self.cfg.set(key, value)
        if self.on_ready is not None:
            self.cfg.set("when_ready", lambda server: self.on_ready())

    def load(self) -> Any:
        # Built in the worker, after the fork: sqlite connections and the access log's
        # file belong to the process that uses them.
        return create_app(self.settings)
