"""The station's pages (Flask, server-rendered Jinja2 templates, no JavaScript build).

Every view is declared with the roles that may open it (``@page``); a view without that
declaration does not exist to the router (``tests/test_station_app.py`` checks every
route). Every form carries the session's CSRF token; every view, playback, download and
export is written to the access log before the bytes leave.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import secrets
import threading
import time
import zipfile
from datetime import datetime, timedelta, timezone
from functools import wraps
from typing import Any, Callable

from flask import (Flask, Response, g, redirect, render_template, request,
                   stream_with_context, url_for)
from markupsafe import Markup

from dock import ledger, registry
from dock.archive import Archive
from dock.enrollment import dock_key
from firmware_py.config import load as load_config
from firmware_py.evidence.keys import load_agency_private, load_registry
from firmware_py.evidence.verify import verify
from station import accounts, filing, media, retention, review, svg
from station import report as yearly
from station.access_log import AccessLog
from station.catalogue import Activity, Catalogue, NotFound, check_name
from station.i18n import LANGUAGES, pick, translate
from station.settings import StationSettings
from station.store import Store

log = logging.getLogger(__name__)

COOKIE = "station_session"
LOGIN_CSRF = "station_login_csrf"
ALL_STAFF = ("custodian", "unit_head", "legal")


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


def create_app(settings: StationSettings) -> Flask:
    app = Flask(__name__)
    station = Station(settings)
    app.extensions["station"] = station
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)  # forms only: nothing big is posted

    def remote() -> str:
        return request.remote_addr or "?"

    def t(key: str) -> str:
        return translate(g.lang, key)

    def audit(action: str, **what: Any) -> None:
        user = g.session.user if g.get("session") else None
        station.access.record(action, user.name if user else "-", user.role if user else "-",
                              remote(), **what)

    @app.before_request
    def load_session() -> None:
        g.lang = pick(request.headers.get("Accept-Language"), request.cookies.get("lang"))
        g.session = accounts.find_session(station.store, request.cookies.get(COOKIE))

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                    "img-src 'self' data:; media-src 'self'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.context_processor
    def helpers() -> dict[str, Any]:
        return {"t": t, "lang": g.lang, "session": g.get("session"), "local_time": local_time,
                "csrf": g.session.csrf if g.get("session") else "",
                "matter_name": lambda m: (getattr(station.matters.get(m), g.lang, None) or m),
                "languages": LANGUAGES}

    def page(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """The roles that may open a view; POSTs also need the session's CSRF token."""
        def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                if g.session is None:
                    return redirect(url_for("login", next=request.path))
                if g.session.user.role not in roles:
                    audit("refused", page=request.path)
                    return render_template("error.html", message=t("forbidden")), 403
                if request.method == "POST":
                    sent = request.form.get("csrf", "")
                    if not hmac.compare_digest(sent, g.session.csrf):
                        return render_template("error.html",
                                               message="CSRF token missing or wrong"), 400
                try:
                    return view(*args, **kwargs)
                except NotFound as exc:
                    return render_template("error.html", message=str(exc)), 404
                except filing.Refused as exc:
                    return render_template("error.html", message=str(exc)), 409
            guarded.roles = roles  # type: ignore[attr-defined]
            return guarded
        return wrap

    def public(view: Callable[..., Any]) -> Callable[..., Any]:
        view.roles = ("anyone",)  # type: ignore[attr-defined]
        return view

    # --- sessions ---------------------------------------------------------------------------

    @app.route("/login", methods=["GET", "POST"])
    @public
    def login() -> Any:
        message = None
        if request.method == "POST":
            pre = request.cookies.get(LOGIN_CSRF, "")
            if not pre or not hmac.compare_digest(pre, request.form.get("csrf", "")):
                message = "CSRF token missing or wrong"
            else:
                name = request.form.get("user", "")[:64]
                try:
                    user = accounts.authenticate(station.store, name,
                                                 request.form.get("password", "")[:1024])
                except accounts.LoginRefused as exc:
                    station.access.record("login_refused", name, "-", remote(), why=exc.reason)
                    message = (t("wrong_login") if exc.reason == "wrong" else
                               f"{t('locked')} {local_time(exc.locked_until)}")
                else:
                    token, session = accounts.open_session(station.store, user, remote())
                    station.access.record("login", user.name, user.role, remote())
                    target = request.args.get("next", "")
                    inside = (target.startswith("/") and not target.startswith("//")
                              and "\\" not in target)  # no other host, however spelt
                    response = redirect(target if inside else url_for("home"))
                    response.set_cookie(COOKIE, token, secure=True, httponly=True,
                                        samesite="Strict")
                    response.delete_cookie(LOGIN_CSRF)
                    return response
        token = secrets.token_urlsafe(24)
        response = Response(render_template("login.html", message=message, login_csrf=token),
                            status=401 if message else 200)
        response.set_cookie(LOGIN_CSRF, token, secure=True, httponly=True, samesite="Strict")
        return response

    @app.route("/logout", methods=["POST"])
    @page(*ALL_STAFF, "admin")
    def logout() -> Any:
        audit("logout")
        accounts.close_session(station.store, g.session)
        response = redirect(url_for("login"))
        response.delete_cookie(COOKIE)
        return response

    @app.route("/lang/<code>")
    @public
    def language(code: str) -> Any:
        back = request.referrer or ""
        response = redirect(back if back.startswith(request.host_url) else url_for("home"))
        if code in LANGUAGES:
            response.set_cookie("lang", code, secure=True, samesite="Strict")
        return response

    @app.route("/")
    @page(*ALL_STAFF, "admin")
    def home() -> Any:
        if g.session.user.role == "admin":
            return redirect(url_for("admin_users"))
        return redirect(url_for("activities"))

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

    # --- filing, matter, review -----------------------------------------------------------

    @app.route("/a/<device>/<activity>/file", methods=["POST"])
    @page("custodian")
    def file_activity(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        filing.file_activity(station.store, item, g.session)
        audit("file", device=device, activity=activity)
        return redirect(url_for("activity", device=device, activity=activity))

    @app.route("/a/<device>/<activity>/confirm", methods=["POST"])
    @page("custodian")
    def confirm_filing(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        filing.confirm_filing(station.store, item, g.session)
        audit("confirm_filing", device=device, activity=activity)
        return redirect(url_for("activity", device=device, activity=activity))

    @app.route("/a/<device>/<activity>/matter", methods=["POST"])
    @page("custodian", "unit_head")
    def set_matter(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        matter = request.form.get("matter", "")
        before = filing.set_matter(station.store, item, matter, station.matters, g.session)
        audit("set_matter", device=device, activity=activity, matter=matter, previous=before)
        return redirect(url_for("activity", device=device, activity=activity))

    @app.route("/a/<device>/<activity>/review", methods=["POST"])
    @page("unit_head")
    def review_record(device: str, activity: str) -> Any:
        station.activity(device, activity)
        name = check_name(request.form.get("work_record", ""), "work record")
        records = {r["name"]: r for r in station.catalogue.work_records(device, activity)}
        if name not in records:
            raise NotFound(f"no work record {name} in {activity}")
        body = review.review(station.store, station.dock_key, settings.dock_id, device,
                             activity, records[name], station.catalogue.folder(device, activity),
                             request.form.get("decision", ""), request.form.get("comment", ""),
                             request.form.get("reason") or None, request.form.get("note", ""),
                             g.session)
        audit("review", device=device, activity=activity, work_record=name,
              decision=body["decision"])
        return redirect(url_for("activity", device=device, activity=activity))

    # --- retention ------------------------------------------------------------------------

    @app.route("/a/<device>/<activity>/hold", methods=["POST"])
    @page("custodian", "legal")
    def hold(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        if request.form.get("release") == "1":
            retention.release_hold(station.store, item, g.session)
            audit("release_hold", device=device, activity=activity)
        else:
            retention.place_hold(station.store, item, request.form.get("reason", ""), g.session)
            audit("hold", device=device, activity=activity, reason=request.form.get("reason"))
        return redirect(url_for("activity", device=device, activity=activity))

    @app.route("/a/<device>/<activity>/long-term", methods=["POST"])
    @page("custodian")
    def long_term(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        filing.set_long_term(station.store, item, request.form.get("reason", ""), g.session)
        audit("long_term", device=device, activity=activity, reason=request.form.get("reason"))
        return redirect(url_for("activity", device=device, activity=activity))

    @app.route("/a/<device>/<activity>/purge", methods=["POST"])
    @page("custodian")
    def purge(device: str, activity: str) -> Any:
        item = station.activity(device, activity)
        now = time.time()
        try:
            if request.form.get("confirm") == "1":
                files = retention.confirm_purge(station.store, station.catalogue, item,
                                                g.session, now)
                audit("purge", device=device, activity=activity, purged=files)
            else:
                retention.request_purge(station.store, item, g.session, now)
                audit("purge_requested", device=device, activity=activity)
        except filing.Refused as exc:
            audit("purge_refused", device=device, activity=activity, why=str(exc))
            raise
        return redirect(url_for("activity", device=device, activity=activity))

    @app.route("/retention", methods=["GET", "POST"])
    @page("custodian", "legal", "admin")
    def retention_page() -> Any:
        if request.method == "POST":
            if g.session.user.role != "admin":
                return render_template("error.html", message=t("forbidden")), 403
            matter = request.form.get("matter", "")
            if matter not in station.matters:
                raise NotFound(f"matter {matter!r} is not in the unit's list")
            months = request.form.get("months", "")
            if not months.isdigit():
                raise filing.Refused(f"months {months!r}: a whole number")
            retention.set_months(station.store, matter, int(months))
            audit("set_retention", matter=matter, months=int(months))
            return redirect(url_for("retention_page"))
        overdue, _ = station.overdue()
        soon = retention.purgeable_soon(station.store, station.catalogue.activities(overdue),
                                        time.time())
        schedule = {m: retention.months_for(station.store, m) for m in station.matters}
        return render_template("retention.html", soon=soon, schedule=schedule)

    # --- ledger ---------------------------------------------------------------------------

    @app.route("/ledger", methods=["GET", "POST"])
    @page("custodian", "unit_head")
    def ledger_page() -> Any:
        if request.method == "POST":
            if g.session.user.role != "custodian":
                return render_template("error.html", message=t("forbidden")), 403
            device = check_name(request.form.get("device", ""), "device")
            with station.index_lock:
                try:
                    if request.form.get("action") == "check_out":
                        officer = request.form.get("officer", "").strip()
                        if not officer or len(officer) > 32:
                            raise filing.Refused("name the officer (1-32 characters)")
                        if not registry.is_enrolled(settings.dock_dir, device):
                            raise filing.Refused(f"device {device} is not enrolled")
                        ledger.assign(station.archive, device, officer)
                        audit("check_out", device=device, officer=officer)
                    else:
                        officer = ledger.release(station.archive, device)
                        audit("check_in", device=device, officer=officer)
                except ledger.LedgerError as exc:
                    raise filing.Refused(str(exc)) from None
            return redirect(url_for("ledger_page"))
        overdue, silent = station.overdue()
        with station.index_lock:
            rows = ledger.rows(station.archive)
        out = {r.device for r in rows if r.released_at is None}
        devices = sorted(load_registry(settings.dock_dir).values(), key=lambda d: d.device)
        late = [a for a in station.catalogue.activities(overdue) if a.overdue]
        by_officer: dict[str, list[Any]] = {}
        by_device: dict[str, list[Any]] = {}
        for r in rows:
            by_officer.setdefault(r.officer, []).append(r)
            by_device.setdefault(r.device, []).append(r)
        return render_template("ledger.html", rows=rows, out=out, late=late, silent=silent,
                               devices=sorted({d.device for d in devices}),
                               by_officer=by_officer, by_device=by_device)

    @app.route("/ledger.csv")
    @page("custodian", "unit_head")
    def ledger_csv() -> Any:
        audit("download", what="ledger.csv")
        with station.index_lock:
            text = ledger.csv_text(station.archive)
        return Response(text, mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="ledger.csv"'})

    # --- yearly review --------------------------------------------------------------------

    def period() -> tuple[float, float]:
        year = datetime.now(timezone.utc).year
        try:
            start = datetime.fromisoformat(request.args.get("from") or f"{year}-01-01")
            end = datetime.fromisoformat(request.args.get("to") or f"{year}-12-31")
        except ValueError:
            raise filing.Refused("the period's dates: YYYY-MM-DD") from None
        start, end = (d.replace(tzinfo=d.tzinfo or timezone.utc) for d in (start, end))
        if end < start:
            raise filing.Refused("the period ends before it starts")
        return start.timestamp(), (end + timedelta(days=1)).timestamp()

    def build_review() -> yearly.Review:
        start, end = period()
        overdue, _ = station.overdue()
        return yearly.build(station.catalogue, start, end, overdue)

    @app.route("/yearly")
    @page("legal", "unit_head")
    def yearly_page() -> Any:
        result = build_review()
        audit("report", what="yearly", period=[request.args.get("from"), request.args.get("to")])
        matter = {getattr(station.matters.get(m), g.lang, None) or m: n
                  for m, n in result.by_matter.items()}
        charts = [svg.bars(t("matter"), matter),
                  svg.bars(t("interruptions"), dict(result.by_reason)),
                  svg.bars(t("hours_by_officer"), result.hours_by_officer, unit=" h")]
        return render_template("yearly.html", r=result, charts=[Markup(c) for c in charts],
                               q=request.args)

    @app.route("/yearly.csv")
    @page("legal", "unit_head")
    def yearly_csv() -> Any:
        result = build_review()
        audit("download", what="yearly.csv")
        return Response(yearly.csv_text(result), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="yearly-review.csv"'})

    @app.route("/yearly.pdf")
    @page("legal", "unit_head")
    def yearly_pdf() -> Any:
        result = build_review()
        audit("download", what="yearly.pdf")
        unit = next((a.unit for a in station.catalogue.activities() if a.unit), "")
        return Response(yearly.pdf_bytes(result, unit), mimetype="application/pdf",
                        headers={"Content-Disposition": 'inline; filename="yearly-review.pdf"'})

    # --- access log and administration ------------------------------------------------------

    @app.route("/access-log")
    @page("legal", "admin")
    def access_log() -> Any:
        audit("view", what="access-log")
        return render_template("access_log.html", entries=station.access.entries()[-500:])

    @app.route("/admin/users", methods=["GET", "POST"])
    @page("admin")
    def admin_users() -> Any:
        message = None
        if request.method == "POST":
            try:
                if request.form.get("action") == "unlock":
                    accounts.unlock(station.store, request.form.get("name", ""))
                    audit("user_unlocked", name=request.form.get("name"))
                else:
                    accounts.add_user(station.store, request.form.get("name", ""),
                                      request.form.get("role", ""),
                                      request.form.get("password", ""), g.session.user.name)
                    audit("user_added", name=request.form.get("name"),
                          new_role=request.form.get("role"))
            except accounts.AccountError as exc:
                message = str(exc)
        return render_template("admin_users.html", users=accounts.users(station.store),
                               roles=accounts.ROLES, message=message)

    @app.errorhandler(404)
    def not_found(_: Any) -> Any:
        if not g.get("lang"):
            g.lang = "zh"
        return render_template("error.html", message="not found"), 404

    return app


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
        import math
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
