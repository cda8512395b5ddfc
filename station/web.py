"""The station's request plumbing: each request's language and session, the security
headers, the template helpers, and ``Web`` — the guard every view is declared with
(``page``: the roles that may open it, the CSRF token on every POST) and the access log's
``audit`` for the request's user and address."""

from __future__ import annotations

import hmac
from functools import wraps
from typing import Any, Callable

from flask import Flask, Response, g, redirect, render_template, request, url_for

from station import accounts, filing
from station.catalogue import NotFound
from station.i18n import LANGUAGES, pick, translate
from station.state import Station, local_time

COOKIE = "station_session"
LOGIN_CSRF = "station_login_csrf"
ALL_STAFF = ("custodian", "unit_head", "legal")


class Web:
    def __init__(self, app: Flask, station: Station) -> None:
        self.station = station
        app.before_request(self._load_session)
        app.after_request(self._headers)
        app.context_processor(self._helpers)

    @staticmethod
    def remote() -> str:
        return request.remote_addr or "?"

    @staticmethod
    def t(key: str) -> str:
        return translate(g.lang, key)

    def audit(self, action: str, **what: Any) -> None:
        """One access-log entry for the request's user, from the request's address."""
        user = g.session.user if g.get("session") else None
        self.station.access.record(action, user.name if user else "-",
                                   user.role if user else "-", self.remote(), **what)

    def _load_session(self) -> None:
        g.lang = pick(request.headers.get("Accept-Language"), request.cookies.get("lang"))
        g.session = accounts.find_session(self.station.store, request.cookies.get(COOKIE))

    @staticmethod
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                    "img-src 'self' data:; media-src 'self'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _helpers(self) -> dict[str, Any]:
        matters = self.station.matters
        return {"t": self.t, "lang": g.lang, "session": g.get("session"),
                "local_time": local_time, "csrf": g.session.csrf if g.get("session") else "",
                "matter_name": lambda m: (getattr(matters.get(m), g.lang, None) or m),
                "languages": LANGUAGES}

    def page(self, *roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """The roles that may open a view; POSTs also need the session's CSRF token."""
        def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                if g.session is None:
                    return redirect(url_for("login", next=request.path))
                if g.session.user.role not in roles:
                    self.audit("refused", page=request.path)
                    return render_template("error.html", message=self.t("forbidden")), 403
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

    @staticmethod
    def public(view: Callable[..., Any]) -> Callable[..., Any]:
        view.roles = ("anyone",)  # type: ignore[attr-defined]
        return view
