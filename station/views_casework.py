"""What custodians and the unit head do to an activity: filing by two custodians, the
matter type, work record review, holds, long-term keeping, purge, the retention schedule."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, g, redirect, render_template, request, url_for

from station import filing, retention, review
from station.catalogue import NotFound, check_name
from station.web import Web


def register(app: Flask, web: Web) -> None:
    station, settings = web.station, web.station.settings
    page, audit, t = web.page, web.audit, web.t

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
