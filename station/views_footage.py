"""Footage in the browser: the activity list and search, an activity's page (recordings,
timeline, photos, GNSS track, verification), playback, photos, export and custody."""

from __future__ import annotations

import io
import json
import math
import time
import zipfile
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask, Response, request, render_template, stream_with_context
from markupsafe import Markup

from station import media, retention, review, svg
from station.catalogue import Activity, NotFound
from station.state import Station, local_time
from station.web import ALL_STAFF, Web


def register(app: Flask, web: Web) -> None:
    station, settings = web.station, web.station.settings
    page, audit = web.page, web.audit

    # --- footage --------------------------------------------------------------------------

    @app.route("/activities")
    @page(*ALL_STAFF)
    def activities() -> Any:
        overdue, silent = station.overdue()
        items = station.catalogue.activities(overdue)
        for item in items:
            if item.place is None and not item.purged:
                fixes = station.track(item)
                item.place = (fixes[0]["lat"], fixes[0]["lon"]) if fixes else None
        q = request.args
        chosen = [i for i in items if _matches(i, q)]
        audit("list", query={k: v for k, v in q.items() if v} or None, shown=len(chosen))
        return render_template("activities.html", items=chosen, q=q, matters=station.matters,
                               silent=silent)

    @app.route("/a/<device>/<activity>")
    @page(*ALL_STAFF)
    def activity(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        audit("view", device=device, activity=activity)
        report = None
        fixes: list[dict[str, Any]] = []
        if not item.purged:
            report = station.verification(item)
            fixes = station.track(item)
        events = station.catalogue.events(device, activity)
        timeline = _timeline(item, events, fixes)
        records = station.catalogue.work_records(device, activity) if not item.purged else []
        now = time.time()
        return render_template(
            "activity.html", a=item, report=report, events=events, timeline=Markup(timeline),
            track=Markup(svg.track(fixes, _located(events, fixes))), records=records,
            reviews=review.latest(station.store, device, activity),
            reasons=review.REASONS, matters=station.matters,
            recordings=_recordings(item.summary),
            photos=[p for p in _list(item.summary.get("photos")) if isinstance(p, str)],
            expiry=retention.expires_at(station.store, item),
            purge_blocked=retention.why_not_purge(station.store, item, now),
            purge_request=station.store.one(
                "SELECT requested_by, requested_at FROM purge_requests WHERE device=? AND "
                "activity=? AND state='requested'", item.key),
            files=station.catalogue.files(device, activity))

    @app.route("/a/<device>/<activity>/video/<name>")
    @page(*ALL_STAFF)
    def video(device: str, activity: str, name: str) -> Any:
        if not name.endswith(".ts.bce"):
            raise NotFound(f"{name} is not a recording")
        path = station.catalogue.archived_file(device, activity, name)
        download = request.args.get("download") == "1"
        if download or request.range is None or request.range.ranges[0][0] == 0:
            # A seek asks for a later range of the same playback: one entry per playback.
            audit("download" if download else "play", device=device, activity=activity,
                  file=name)
        plain = media.decrypt(path, station.agency_key)
        if download or request.range is not None:
            # A browser asks for ranges to seek: the whole MP4 is made in memory (the remux
            # takes a small fraction of the segment's length) and the range answered.
            whole = Response(b"".join(media.mp4_stream(plain, name)), mimetype="video/mp4")
            if download:
                whole.headers["Content-Disposition"] = (
                    f'attachment; filename="{name[:-len(".ts.bce")]}.mp4"')
            return whole.make_conditional(request, accept_ranges=True)
        return Response(stream_with_context(media.mp4_stream(plain, name)), mimetype="video/mp4")

    @app.route("/a/<device>/<activity>/photo/<name>")
    @page(*ALL_STAFF)
    def photo(device: str, activity: str, name: str) -> Any:
        if not name.endswith(".jpg.bce"):
            raise NotFound(f"{name} is not a photo")
        path = station.catalogue.archived_file(device, activity, name)
        download = request.args.get("download") == "1"
        audit("download" if download else "photo", device=device, activity=activity, file=name)
        response = Response(media.decrypt(path, station.agency_key), mimetype="image/jpeg")
        if download:
            response.headers["Content-Disposition"] = (
                f'attachment; filename="{name[:-len(".bce")]}"')
        return response

    @app.route("/a/<device>/<activity>/export.zip")
    @page("custodian", "legal")
    def export(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        if item.purged:
            raise NotFound(f"{activity} was purged")
        folder = station.catalogue.folder(device, activity)
        report = station.verification(item)
        audit("export", device=device, activity=activity, valid=report.ok,
              files=len(station.catalogue.files(device, activity)))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
            for f in station.catalogue.files(device, activity):
                z.write(folder / f["name"], f"{activity}/{f['name']}")
            z.writestr(f"{activity}/verification-report.json",
                       json.dumps(report.to_json(), indent=1, ensure_ascii=False))
            z.writestr(f"{activity}/reviews.json", json.dumps(
                review.reviews(station.store, device, activity), indent=1, ensure_ascii=False))
            z.write(settings.dock_dir / "keys" / "dock_ed25519.pub.pem", "dock_ed25519.pub.pem")
        return Response(buffer.getvalue(), mimetype="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{device}_{activity}.zip"'})

    @app.route("/a/<device>/<activity>/custody")
    @page(*ALL_STAFF)
    def custody(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        audit("view_custody", device=device, activity=activity)
        return render_template("custody.html", a=item,
                               chain=_custody(station, item))


def _matches(item: Activity, q: Any) -> bool:
    for key in ("device", "officer"):
        if q.get(key) and q.get(key).strip().lower() not in getattr(item, key).lower():
            return False
    if q.get("matter") and item.matter != q.get("matter"):
        return False
    day = lambda ts: datetime.fromtimestamp(ts, timezone(timedelta(seconds=item.utc_offset_s))  # noqa: E731
                                            ).date().isoformat() if ts else ""
    if q.get("from") and day(item.opened_utc) < q.get("from"):
        return False
    if q.get("to") and day(item.opened_utc) > q.get("to"):
        return False
    if q.get("near"):
        try:
            lat, lon = (float(v) for v in q.get("near").split(","))
            radius = float(q.get("km") or 1.0)
        except ValueError:
            return False
        if item.place is None:
            return False
        d = math.hypot((item.place[0] - lat) * 111.32,
                       (item.place[1] - lon) * 111.32 * math.cos(math.radians(lat)))
        if d > radius:
            return False
    flag = q.get("flag")
    flags = {"incident": item.incident, "long_term": item.long_term,
             "interruption": bool(item.interruptions), "overdue": item.overdue,
             "unfiled": item.filing != "filed"}
    return not flag or flags.get(flag, False)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _recordings(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The recordings activity.json lists, with only the values the page uses, checked."""
    out = []
    for r in _list(summary.get("recordings")):
        if isinstance(r, dict):
            out.append({"files": [f for f in _list(r.get("files")) if isinstance(f, str)],
                        "duration_s": r.get("duration_s") if isinstance(
                            r.get("duration_s"), (int, float)) else "?",
                        "segments": r.get("segments") if isinstance(r.get("segments"), int) else "?",
                        "reason": str(r.get("reason", ""))[:40]})
    return out


def _located(events: list[dict[str, Any]], fixes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Photos and markers placed on the track at the fix nearest their time."""
    out = []
    for e in events:
        if e.get("kind") in ("photo", "marker") and fixes:
            when = (e.get("time") or {}).get("utc") or 0
            nearest = min(fixes, key=lambda f: abs((f["utc"] or 0) - when))
            out.append({**nearest, "label": e["kind"]})
    return out


def _timeline(item: Activity, events: list[dict[str, Any]], fixes: list[dict[str, Any]]) -> str:
    times = [(e.get("time") or {}).get("utc") for e in events]
    times = [x for x in times if isinstance(x, (int, float))]
    if not times:
        return ""
    spans, ticks, started = [], [], None
    for e in events:
        when = (e.get("time") or {}).get("utc")
        if not isinstance(when, (int, float)):
            continue
        kind = e.get("kind")
        label = f"{kind} {local_time(when, item.utc_offset_s, False)}"
        if kind == "recording_started":
            started = when - float(e.get("pre_event_s") or 0)
        elif kind == "recording_stopped" and started is not None:
            spans.append((started, when, label))
            started = None
        elif kind == "marker":
            ticks.append((when, "incident" if e.get("incident") else "marker", label))
        elif kind in ("photo", "interruption"):
            ticks.append((when, kind, label))
    return svg.timeline(min(times + [s for s, _, _ in spans]), max(times), spans, ticks)


def _custody(station: Station, item: Activity) -> list[dict[str, Any]]:
    """The activity's whole chain: recorded, uploaded, verified, filed, reviewed, viewed,
    exported, in time order."""
    chain: list[dict[str, Any]] = []
    s = item.summary
    if item.opened_utc:
        chain.append({"at": item.opened_utc, "what": "recorded",
                      "who": item.officer, "detail": f"opened on {item.device}"})
    if item.closed_utc:
        chain.append({"at": item.closed_utc, "what": "recorded", "who": item.officer,
                      "detail": f"ended: {len(_recordings(s))} recordings"})
    files = station.catalogue.files(*item.key)
    if files:
        stored = [f["stored_at"] for f in files if f["stored_at"]]
        chain.append({"at": min(stored), "what": "uploaded", "who": station.settings.dock_id,
                      "detail": f"{len(files)} files stored and receipted by the dock"})
        chain.append({"at": max(stored), "what": "verified", "who": station.settings.dock_id,
                      "detail": f"{sum(f['verified'] for f in files)} of {len(files)} files "
                                "checked against their seals on arrival"})
    if item.filed_at:
        chain.append({"at": item.filed_at, "what": "filed", "who": item.filed_by, "detail": ""})
    if item.confirmed_at:
        chain.append({"at": item.confirmed_at, "what": "filed", "who": item.confirmed_by,
                      "detail": "confirmed by a second custodian"})
    for matter, previous, who, at in station.store.all(
            "SELECT matter, previous, set_by, set_at FROM matters WHERE device=? AND "
            "activity=? ORDER BY set_at", item.key):
        chain.append({"at": at, "what": "matter set", "who": who,
                      "detail": f"{previous} → {matter}"})
    for r in review.reviews(station.store, *item.key):
        chain.append({"at": r["at"], "what": "reviewed", "who": r["reviewer"],
                      "detail": f"{r['work_record']}: {r['state']} — {r['comment']}"})
    for e in station.access.for_activity(*item.key):
        f = e.get("fields") or {}
        chain.append({"at": (e.get("time") or {}).get("utc"), "what": e.get("kind"),
                      "who": f.get("user"), "detail": f"{f.get('file') or ''} from "
                                                      f"{f.get('from')} (access log #{e['seq']})"})
    return sorted(chain, key=lambda c: c["at"] or 0)
