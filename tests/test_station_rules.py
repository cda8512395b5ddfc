"""The station's rules without a browser: accounts and lockout, retention and the
two-person purge, roles declared on every route, hostile names, and the playback remux
checked by ffprobe. Each test builds a small archive of its own (seconds in all)."""

from __future__ import annotations

import io
import json
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dock.archive import Archive
from dock.enrollment import dock_key
from firmware_py.evidence.keys import agency_key
from station import accounts, media, retention
from station.accounts import Session, User
from station.catalogue import Catalogue, NotFound, check_name
from station.filing import Refused, confirm_filing, file_activity, set_long_term
from station.settings import StationSettings
from station.store import Store

YEAR = 365.25 * 86400


@pytest.fixture
def archive(tmp_path):
    """An archive holding one closed activity of BC-0009, ended ``ended`` seconds ago."""
    dock_dir = tmp_path / "dock"
    agency_key(dock_dir, create=True)
    arc = Archive(tmp_path / "archive", dock_dir, dock_key(dock_dir), "dock-1")
    store = Store(tmp_path / "archive")
    yield arc, store, Catalogue(arc, store)
    store.close()
    arc.close()


def add_activity(arc: Archive, activity: str, ended: float, incident: bool = False,
                 matter: str = "hearing", **odd: object) -> Path:
    folder = arc.root / "BC-0009" / activity
    folder.mkdir(parents=True)
    summary = {"id": activity, "device": "BC-0009", "officer": "OFF-1", "matter": matter,
               "opened": {"utc": ended - 600, "utc_offset_s": 28800},
               "closed": {"utc": ended, "utc_offset_s": 28800}, "incidents": int(incident),
               "long_term": incident, "interruptions": [], **odd}
    (folder / "activity.json").write_text(json.dumps(summary))
    (folder / "seg.ts.bce").write_bytes(b"sealed bytes")
    sequence = arc.db.execute("SELECT COUNT(*) FROM seals").fetchone()[0] + 1
    arc.db.execute("INSERT INTO seals VALUES ('BC-0009', ?, 'activity', ?, 'OFF-1', ?, ?, "
                   "'activity.manifest.json')", (sequence, activity, int((ended - 600) * 1000),
                                                 int(ended * 1000)))
    for name in ("activity.json", "seg.ts.bce"):
        arc.db.execute("INSERT INTO files (file_id, device, name, activity, size, sha256, state, "
                       "archive_path, stored_at, verified) VALUES (?, 'BC-0009', ?, ?, 1, 'ab', "
                       "'archived', ?, ?, 1)", (f"{activity}-{name}", name, activity,
                                                f"BC-0009/{activity}/{name}", ended))
    arc.db.commit()
    return folder


def session(name: str, token: str = "") -> Session:
    return Session(token or f"token-of-{name}", User(name, "custodian"), "csrf")


@pytest.mark.req("R15.1")
def test_an_expired_activity_is_purged_by_two_custodians_and_what_went_is_recorded(archive):
    arc, store, catalogue = archive
    now = time.time()
    folder = add_activity(arc, "A1", now - 3.1 * YEAR)  # past 36 months
    item = catalogue.activity("BC-0009", "A1")
    assert retention.why_not_purge(store, item, now) == []
    retention.request_purge(store, item, session("cus1"), now)
    with pytest.raises(Refused, match="second custodian"):
        retention.confirm_purge(store, catalogue, item, session("cus1"), now)
    files = retention.confirm_purge(store, catalogue, item, session("cus2"), now)
    assert {f["name"] for f in files} == {"activity.json", "seg.ts.bce"}
    assert not folder.exists()
    assert catalogue.activity("BC-0009", "A1").purged
    requested_by, confirmed_by, listed = store.one(
        "SELECT requested_by, confirmed_by, files FROM purged")
    assert (requested_by, confirmed_by) == ("cus1", "cus2") and json.loads(listed) == files


@pytest.mark.req("R15.1", "R15.2", "R16.1")
def test_retention_hold_and_long_term_each_stop_a_purge(archive):
    arc, store, catalogue = archive
    now = time.time()
    add_activity(arc, "YOUNG", now - 2 * YEAR)
    add_activity(arc, "KEPT", now - 5 * YEAR, incident=True)
    add_activity(arc, "HELD", now - 5 * YEAR)
    young = catalogue.activity("BC-0009", "YOUNG")
    assert any("not expired" in r for r in retention.why_not_purge(store, young, now))
    retention.set_months(store, "hearing", 12)  # the schedule is per matter type
    assert retention.why_not_purge(store, catalogue.activity("BC-0009", "YOUNG"), now) == []
    kept = catalogue.activity("BC-0009", "KEPT")
    with pytest.raises(Refused, match="long-term"):
        retention.request_purge(store, kept, session("cus1"), now)
    held = catalogue.activity("BC-0009", "HELD")
    retention.request_purge(store, held, session("cus1"), now)
    retention.place_hold(store, held, "a complaint was filed", session("legal"))
    # The hold came after the request: the confirmation re-checks and refuses.
    with pytest.raises(Refused, match="on hold"):
        retention.confirm_purge(store, catalogue, catalogue.activity("BC-0009", "HELD"),
                                session("cus2"), now)
    assert (arc.root / "BC-0009" / "HELD" / "seg.ts.bce").exists()
    soon = retention.purgeable_soon(store, catalogue.activities(), now)
    assert [a.id for a, _ in soon] == ["YOUNG"]
    # Kept long-term at the dock (R16.1): a reason is needed, and then it is never purged.
    with pytest.raises(Refused, match="why"):
        set_long_term(store, catalogue.activity("BC-0009", "YOUNG"), " ", session("cus1"))
    set_long_term(store, catalogue.activity("BC-0009", "YOUNG"), "party disputes it",
                  session("cus1"))
    young = catalogue.activity("BC-0009", "YOUNG")
    assert young.long_term and any("long-term" in r for r in
                                   retention.why_not_purge(store, young, now + 100 * YEAR))
    assert retention.purgeable_soon(store, catalogue.activities(), now) == []


@pytest.mark.req("R13.3")
def test_filing_needs_a_second_custodian_in_another_session(archive):
    arc, store, catalogue = archive
    add_activity(arc, "F1", time.time())
    item = catalogue.activity("BC-0009", "F1")
    file_activity(store, item, session("cus1", "s1"))
    with pytest.raises(Refused, match="second custodian"):
        confirm_filing(store, item, session("cus1", "s2"))
    with pytest.raises(Refused, match="already filed"):
        file_activity(store, item, session("cus2", "s3"))
    confirm_filing(store, item, session("cus2", "s3"))
    filed = catalogue.activity("BC-0009", "F1")
    assert (filed.filing, filed.filed_by, filed.confirmed_by) == ("filed", "cus1", "cus2")


def test_passwords_are_argon2id_and_five_failures_lock_for_a_while(tmp_path):
    store = Store(tmp_path)
    accounts.add_user(store, "cus1", "custodian", "a-long-password", "test")
    assert store.one("SELECT password_hash FROM users")[0].startswith("$argon2id$")
    with pytest.raises(accounts.AccountError, match="at least"):
        accounts.add_user(store, "cus2", "custodian", "short", "test")
    with pytest.raises(accounts.AccountError, match="role"):
        accounts.add_user(store, "cus3", "root", "a-long-password", "test")
    now = 1_000_000.0
    for _ in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(accounts.LoginRefused) as refused:
            accounts.authenticate(store, "cus1", "wrong-password", now)
        assert refused.value.reason == "wrong"
    with pytest.raises(accounts.LoginRefused) as refused:
        accounts.authenticate(store, "cus1", "wrong-password", now)
    assert refused.value.reason == "locked"
    with pytest.raises(accounts.LoginRefused, match="locked"):
        accounts.authenticate(store, "cus1", "a-long-password", now + 60)
    accounts.unlock(store, "cus1")  # or the administrator lifts it
    assert accounts.authenticate(store, "cus1", "a-long-password", now + 60).role == "custodian"
    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(accounts.LoginRefused):
            accounts.authenticate(store, "cus1", "wrong-password", now)
    after = now + accounts.LOCK_SECONDS + 1
    assert accounts.authenticate(store, "cus1", "a-long-password", after).role == "custodian"
    token, opened = accounts.open_session(store, User("cus1", "custodian"), "127.0.0.1")
    assert accounts.find_session(store, token).user.name == "cus1"
    assert accounts.find_session(store, token + "x") is None
    assert accounts.find_session(store, token, time.time() + accounts.IDLE_SECONDS + 5) is None
    store.close()


def test_every_route_declares_the_roles_that_may_open_it(archive, tmp_path):
    from station.app import create_app

    arc, store, _ = archive
    app = create_app(StationSettings(arc.root, tmp_path / "dock", "dock-1"))
    views = {rule.endpoint: app.view_functions[rule.endpoint] for rule in app.url_map.iter_rules()
             if rule.endpoint != "static"}
    assert len(views) > 20
    undeclared = [name for name, view in views.items() if not getattr(view, "roles", None)]
    assert undeclared == []
    public = sorted(name for name, view in views.items() if view.roles == ("anyone",))
    assert public == ["language", "login"]
    admin_only = [name for name, view in views.items() if view.roles == ("admin",)]
    assert admin_only == ["admin_users"]
    client = app.test_client()
    # Without a session every page sends to the login; hostile names are refused as names.
    assert client.get("/activities").status_code == 302
    assert client.get("/a/BC-0009/..%2F..%2Fetc/video/passwd").status_code in (302, 404)
    app.extensions["station"].close()


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "", ".hidden", "x" * 200, "a\x00b"])
def test_names_from_urls_are_checked(name):
    with pytest.raises(NotFound):
        check_name(name, "file")


def _segment() -> bytes:
    """One second of H.264 + AAC in MPEG-TS, as a recorder writes it."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mpegts") as ts:
        video = ts.add_stream("libx264", rate=15)
        video.width, video.height, video.pix_fmt = 160, 96, "yuv420p"
        audio = ts.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for i in range(15):
            frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), i * 10, np.uint8), "rgb24")
            frame.pts = i
            ts.mux(video.encode(frame))
        for i in range(16):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                                 layout="mono")
            samples.sample_rate, samples.pts, samples.time_base = 16000, i * 1024, Fraction(1, 16000)
            ts.mux(audio.encode(samples))
        ts.mux(video.encode(None))
        ts.mux(audio.encode(None))
    return out.getvalue()


def test_playback_remuxes_without_reencoding_into_fragmented_mp4(tmp_path):
    plain = _segment()
    mp4 = b"".join(media.mp4_stream(plain))
    (tmp_path / "out.mp4").write_bytes(mp4)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json",
         str(tmp_path / "out.mp4")], capture_output=True, text=True, check=True).stdout)
    codecs = sorted(s["codec_name"] for s in probe["streams"])
    assert codecs == ["aac", "h264"]
    assert "mp4" in probe["format"]["format_name"]
    assert b"moof" in mp4 and b"mvex" in mp4  # fragmented: playable as it arrives
    with av.open(io.BytesIO(plain)) as a, av.open(io.BytesIO(mp4)) as b:
        source = [bytes(p) for p in a.demux(a.streams.video[0]) if p.size]
        remuxed = [bytes(p) for p in b.demux(b.streams.video[0]) if p.size]
    assert len(source) == len(remuxed) == 15  # every frame, none re-encoded
    with pytest.raises(media.MediaError):
        b"".join(media.mp4_stream(b"not a transport stream" * 100))


def test_a_form_without_the_sessions_csrf_token_is_refused(archive, tmp_path):
    from station.app import create_app

    arc, store, catalogue = archive
    add_activity(arc, "C1", time.time())
    accounts.add_user(store, "cus1", "custodian", "a-long-password", "test")
    app = create_app(StationSettings(arc.root, tmp_path / "dock", "dock-1"))
    client = app.test_client()
    https = {"base_url": "https://localhost"}
    page = client.get("/login", **https).get_data(as_text=True)
    login_csrf = page.split('name="csrf" value="')[1].split('"')[0]
    # The login form's own token must match its cookie.
    refused = client.post("/login", data={"user": "cus1", "password": "a-long-password",
                                          "csrf": "forged"}, **https)
    assert refused.status_code == 401
    page = client.get("/login", **https).get_data(as_text=True)
    login_csrf = page.split('name="csrf" value="')[1].split('"')[0]
    done = client.post("/login", data={"user": "cus1", "password": "a-long-password",
                                       "csrf": login_csrf}, **https)
    assert done.status_code == 302
    hold = {"reason": "complaint"}
    assert client.post("/a/BC-0009/C1/hold", data=hold, **https).status_code == 400
    assert client.post("/a/BC-0009/C1/hold", data={**hold, "csrf": "x" * 43},
                       **https).status_code == 400
    assert not catalogue.activity("BC-0009", "C1").hold
    page = client.get("/a/BC-0009/C1/custody", **https).get_data(as_text=True)
    token = page.split('name="csrf" value="')[1].split('"')[0]
    assert client.post("/a/BC-0009/C1/hold", data={**hold, "csrf": token},
                       **https).status_code == 302
    assert catalogue.activity("BC-0009", "C1").hold
    app.extensions["station"].close()


def test_an_activity_json_with_wrong_types_is_shown_not_trusted(archive, tmp_path):
    from station.app import create_app

    arc, store, catalogue = archive
    add_activity(arc, "ODD", time.time(), officer=["not", "a", "name"], opened="yesterday",
                 incidents="many", recordings=[{"files": 7}, "x", {"files": ["../../etc"]}],
                 photos={"a": 1}, interruptions="none", matter=None)
    item = catalogue.activity("BC-0009", "ODD")
    assert item.interruptions == [] and not item.incident and item.matter == "other"
    accounts.add_user(store, "legal", "legal", "a-long-password", "test")
    app = create_app(StationSettings(arc.root, tmp_path / "dock", "dock-1"))
    client = app.test_client()
    https = {"base_url": "https://localhost"}
    page = client.get("/login", **https).get_data(as_text=True)
    token = page.split('name="csrf" value="')[1].split('"')[0]
    client.post("/login", data={"user": "legal", "password": "a-long-password", "csrf": token},
                **https)
    shown = client.get("/a/BC-0009/ODD", **https)
    assert shown.status_code == 200
    # A file name that is not the archive's is refused, not opened.
    assert client.get("/a/BC-0009/ODD/video/..%2F..%2Fetc.ts.bce", **https).status_code == 404
    app.extensions["station"].close()


def test_the_first_account_is_made_at_the_dock(tmp_path, capsys, monkeypatch):
    from bodycam.cli import main

    config = tmp_path / "dock.toml"
    config.write_text(f'[dock]\ndir = "{tmp_path / "dock"}"\narchive = "{tmp_path / "archive"}"\n')
    # Without an agency key there is nothing the station could show: refused at start.
    assert main(["dock", "--config", str(config), "web", "--port", "18999"]) == 2
    assert "no agency key" in capsys.readouterr().err
    assert main(["dock", "--config", str(config), "web-user", "add", "boss", "--role",
                 "admin"]) == 0
    password = capsys.readouterr().out.split("password: ")[1].strip()
    store = Store(tmp_path / "archive")
    assert accounts.authenticate(store, "boss", password).role == "admin"
    store.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["dock", "--config", str(config), "web-user", "add", "cus1", "--role",
                 "custodian", "--password-stdin"]) == 1
    assert "at least" in capsys.readouterr().err
    assert main(["dock", "--config", str(config), "web-user", "list"]) == 0
    assert capsys.readouterr().out.split() == ["boss", "admin"]


@pytest.mark.req("R17.1")
def test_the_yearly_review_counts_what_lies_in_its_period(archive):
    from station import report

    arc, store, catalogue = archive
    start = time.mktime((2026, 1, 1, 0, 0, 0, 0, 0, 0))
    add_activity(arc, "IN1", start + 86400, matter="hearing")
    add_activity(arc, "IN2", start + 2 * 86400, matter="lien_delivery", unassigned=True,
                 officer="", interruptions=[{"number": 1, "reason": "weather"}])
    add_activity(arc, "OUT", start - 86400)
    file_activity(store, catalogue.activity("BC-0009", "IN1"), session("cus1", "a"))
    confirm_filing(store, catalogue.activity("BC-0009", "IN1"), session("cus2", "b"))
    result = report.build(catalogue, start, start + YEAR, overdue={("BC-0009", "IN2")})
    device = next(r for r in result.rows if r.subject == "device")
    assert (device.activities, device.not_filed, device.unassigned, device.late_uploads,
            device.interruptions) == (2, 1, 1, 1, 1)
    assert dict(device.by_matter) == {"hearing": 1, "lien_delivery": 1}
    assert dict(result.by_reason) == {"weather": 1}
    officer = next(r for r in result.rows if r.subject == "officer")
    assert (officer.name, officer.activities, officer.unassigned) == ("OFF-1", 2, 1)
    text = report.csv_text(result)
    assert text.splitlines()[0].startswith("subject,name,activities,recording_hours")
    assert report.pdf_bytes(result, "单位 unit")[:5] == b"%PDF-"


def test_the_activity_search_by_device_officer_matter_date_place_and_flags(archive):
    from station.views_footage import _matches

    arc, store, catalogue = archive
    add_activity(arc, "S1", time.mktime((2026, 11, 29, 9, 0, 0, 0, 0, -1)), incident=True)
    item = catalogue.activity("BC-0009", "S1", overdue={("BC-0009", "S1")})
    item.place = (33.8683, 113.0542)
    hits = [{}, {"device": "bc-0009"}, {"officer": "off-1"}, {"matter": "hearing"},
            {"from": "2026-11-29", "to": "2026-11-29"}, {"near": "33.8690,113.0550", "km": "1"},
            {"flag": "incident"}, {"flag": "long_term"}, {"flag": "overdue"},
            {"flag": "unfiled"}]
    misses = [{"device": "BC-0002"}, {"officer": "OFF-9"}, {"matter": "investigation"},
              {"from": "2026-11-30"}, {"to": "2026-11-28"}, {"near": "33.90,113.05", "km": "1"},
              {"near": "not a place"}, {"flag": "interruption"}, {"flag": "no-such-flag"}]
    assert [q for q in hits if not _matches(item, q)] == []
    assert [q for q in misses if _matches(item, q)] == []
