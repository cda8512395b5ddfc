"""The station's pages (Flask, server-rendered Jinja2 templates, no JavaScript build).

Every view is declared with the roles that may open it (``Web.page``); a view without that
declaration does not exist to the router (``tests/test_station_rules.py`` checks every
route). Every form carries the session's CSRF token; every view, playback, download and
export is written to the access log before the bytes leave. The views are grouped by who
uses them: ``views_sessions``, ``views_footage``, ``views_casework``, ``views_office``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, render_template

from station import views_casework, views_footage, views_office, views_sessions
from station.settings import StationSettings
from station.state import Station
from station.web import Web


def create_app(settings: StationSettings) -> Flask:
    app = Flask(__name__)
    station = Station(settings)
    app.extensions["station"] = station
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)  # forms only: nothing big is posted
    web = Web(app, station)
    for views in (views_sessions, views_footage, views_casework, views_office):
        views.register(app, web)

    @app.errorhandler(404)
    def not_found(_: Any) -> Any:
        if not g.get("lang"):
            g.lang = "zh"
        return render_template("error.html", message="not found"), 404

    return app


