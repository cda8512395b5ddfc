"""Logging in and out, the language, the home page."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Flask, Response, g, redirect, render_template, request, url_for

from station import accounts
from station.i18n import LANGUAGES
from station.state import local_time
from station.web import ALL_STAFF, COOKIE, LOGIN_CSRF, Web


def register(app: Flask, web: Web) -> None:
    station = web.station
    page, public, audit, t, remote = web.page, web.public, web.audit, web.t, web.remote

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
