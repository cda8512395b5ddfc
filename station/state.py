"""What every page of the station shares: the archive, the station's store, the keys, the
access log, and the checks of an activity (verification, GNSS track) kept until its files
change."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from dock.archive import Archive
from dock.enrollment import dock_key
from firmware_py.config import load as load_config
from firmware_py.evidence.keys import load_agency_private, load_registry
from firmware_py.evidence.verify import verify
from station import media
from station.access_log import AccessLog
from station.catalogue import Activity, Catalogue, NotFound
from station.settings import StationSettings
from station.store import Store

log = logging.getLogger(__name__)


class Station:
    """What the pages share: the archive, the station's store, keys, the access log."""

    def __init__(self, settings: StationSettings) -> None:
        self.settings = settings
        self.archive = Archive(settings.archive, settings.dock_dir, dock_key(settings.dock_dir),
                               settings.dock_id)
        self.store = Store(settings.archive)
        self.catalogue = Catalogue(self.archive, self.store)
        self.access = AccessLog(settings.archive)
        self.agency_key = load_agency_private(settings.dock_dir)
        self.dock_key = dock_key(settings.dock_dir)
        self.matters = load_config().policy.activity.matters
        self.index_lock = self.catalogue.lock  # the archive's connection, one thread at a time
        # Verification and the track decrypt every file of an activity: kept per activity
        # until a file arrives or goes (the key is what the index says it holds).
        self._checked: dict[tuple[Any, ...], Any] = {}
        self._checked_lock = threading.Lock()

    def _cached(self, what: str, item: Activity, make: Callable[[], Any]) -> Any:
        folder = self.catalogue.folder(*item.key)
        # What is on disk, as stat sees it: a file changed since is checked again.
        seen = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                            for p in folder.iterdir())) if folder.is_dir() else ()
        key = (what, *item.key, hash(seen))
        with self._checked_lock:
            if key in self._checked:
                return self._checked[key]
        value = make()
        with self._checked_lock:
            if len(self._checked) > 256:
                self._checked.clear()
            self._checked[key] = value
        return value

    def verification(self, item: Activity) -> Any:
        return self._cached("verify", item, lambda: verify(
            [self.catalogue.folder(*item.key)], load_registry(self.settings.dock_dir),
            self.agency_key))

    def overdue(self) -> tuple[set[tuple[str, str]], list[dict[str, Any]]]:
        with self.index_lock:
            found = self.archive.overdue(self.settings.upload_hours, time.time(),
                                         self.settings.dock_every_hours)
        return {(a["device"], a["activity"]) for a in found["activities"]}, found["devices"]

    def activity(self, device: str, activity: str) -> Activity:
        overdue, _ = self.overdue()
        return self.catalogue.activity(device, activity, overdue)

    def track(self, item: Activity) -> list[dict[str, Any]]:
        return self._cached("track", item, lambda: self._track(item))

    def _track(self, item: Activity) -> list[dict[str, Any]]:
        metas = []
        for f in self.catalogue.files(*item.key):
            if f["name"].endswith(".meta.jsonl.bce"):
                try:
                    metas.append(media.decrypt(self.catalogue.archived_file(*item.key, f["name"]),
                                               self.agency_key))
                except (media.MediaError, NotFound) as exc:
                    log.warning("track: %s", exc)
        fixes = media.track(metas)
        if fixes and item.place is None:
            with self.store.tx() as db:
                db.execute("INSERT INTO places VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                           (*item.key, fixes[0]["lat"], fixes[0]["lon"]))
        return fixes

    def close(self) -> None:
        self.access.close()
        self.store.close()
        self.archive.close()


def local_time(ts: float | None, offset_s: int = 28800, with_date: bool = True) -> str:
    if ts is None:
        return "—"
    when = datetime.fromtimestamp(ts, timezone(timedelta(seconds=offset_s)))
    return when.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
