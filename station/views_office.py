"""The office's pages: the ledger and deadlines, the yearly review, the access log, the
accounts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask, Response, g, redirect, render_template, request, url_for
from markupsafe import Markup

from dock import ledger, registry
from firmware_py.evidence.keys import load_registry
from station import accounts, filing, svg
from station import report as yearly
from station.catalogue import check_name
from station.web import Web


def register(app: Flask, web: Web) -> None:
    station, settings = web.station, web.station.settings
    page, audit, t = web.page, web.audit, web.t

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
