"""The custodians' web station in a real headless Chromium (Debian's ``chromium`` driven by
Playwright), against ``bodycam dock web`` — gunicorn over HTTPS — on a dock that has
ingested a simulated shift (one per test session: 80 s of shift in about 5 s).

The shift: a recording with a photo and a marker, a stop whose reason the officer leaves
pending (so the unit head completes it at the dock), a second recording with an incident
marker, the end of the activity, docking through the simulated dock.
"""

from __future__ import annotations

import base64
import io
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from PIL import Image

from dock.broker import free_port
from firmware_py.evidence.canonical import canonical
from simulator.harness import scenario as sc
from station import accounts
from station.store import Store

CHROMIUM = "/usr/bin/chromium"
PASSWORDS = {"cus1": ("custodian", "first-custodian-pw"), "cus2": ("custodian", "second-custodian-pw"),
             "head": ("unit_head", "unit-head-password"), "legal": ("legal", "legal-office-pw"),
             "admin": ("admin", "administrator-pw"), "lockme": ("custodian", "the-right-password")}
SHIFT = {
    "scenario": {"name": "station", "duration": "80s", "start": "2026-11-29T09:00:00+08:00",
                 "seed": 3},
    "config": {"video": {"width": 320, "height": 180, "fps": 15},
               "recording": {"segment_seconds": 20, "pre_event_seconds": 2},
               "device": {"officer": "OFF-0417"}},
    "route": {"waypoints": [[33.86830, 113.05420], [33.86905, 113.05598]], "speed_mps": 3.0},
    "gnss": {"time_to_first_fix": "2s"},
    "event": [{"at": "0:05", "action": "press", "button": "record"},
              {"at": "0:15", "action": "press", "button": "photo"},
              {"at": "0:20", "action": "press", "button": "marker"},
              {"at": "0:30", "action": "press", "button": "record"},   # stop; reason left pending
              {"at": "0:40", "action": "press", "button": "record"},
              {"at": "0:50", "action": "long_press", "button": "marker"},  # incident
              {"at": "1:00", "action": "long_press", "button": "record"},  # end of activity
              {"at": "1:10", "action": "dock"}],
}


@pytest.fixture(scope="module")
def dock(tmp_path_factory):
    """The dock after the shift, with the station's accounts; its directory."""
    from bodycam.simulation import run_docked

    out = tmp_path_factory.mktemp("station")
    run_docked(sc.parse(SHIFT, "station.toml"), out)
    (out / "dock.toml").write_text('[dock]\ndir = "dock"\narchive = "archive"\n')
    store = Store(out / "archive")
    for name, (role, password) in PASSWORDS.items():
        accounts.add_user(store, name, role, password, "test")
    store.close()
    return out


@pytest.fixture(scope="module")
def station(dock):
    """``bodycam dock web`` running on the dock; its base URL."""
    port = free_port()
    output = dock / "station.log"  # a file, not a pipe: a full pipe would stop the server
    with open(output, "w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bodycam", "dock", "--config", "dock.toml", "web", "--port",
             str(port)], cwd=dock, stdout=sink, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while "station at https://localhost:" not in output.read_text():
        assert process.poll() is None and time.monotonic() < deadline, (
            "bodycam dock web did not start:\n" + output.read_text())
        time.sleep(0.1)  # a real server starting in another process: wait for its line
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    # No page of the whole run failed inside the server.
    assert "Traceback" not in output.read_text(), output.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser(station):
    assert Path(CHROMIUM).is_file(), "Debian's chromium is missing: run scripts/system-deps.sh"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()


def login(browser, station, name, password=None, lang="en-US"):
    context = browser.new_context(ignore_https_errors=True, locale=lang,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{station}/login")
    page.fill("#user", name)
    page.fill("#password", password or PASSWORDS[name][1])
    page.click("#login")
    return page



_signed_in: dict[str, object] = {}


def as_user(browser, station, name):
    """A new page in ``name``'s one session of this run (logging in costs an argon2 check
    and a browser context; tests that need a session of their own use ``login``)."""
    if name not in _signed_in:
        _signed_in[name] = login(browser, station, name).context
    return _signed_in[name].new_page()


def activity_url(page, station):
    page.goto(f"{station}/activities")
    link = page.locator("#activities a").first
    return station + link.get_attribute("href")


def test_the_station_serves_https_with_a_certificate_from_the_dock_ca(dock, station):
    context = ssl.create_default_context(cafile=str(dock / "dock" / "ca" / "ca.crt"))
    port = int(station.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    other = ssl.create_default_context()  # the system's CAs do not know the dock's CA
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            other.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.req("R13.3")
def test_two_custodians_file_an_activity(browser, station):
    first = login(browser, station, "cus1")
    url = activity_url(first, station)
    first.goto(url)
    assert first.inner_text("#filing") == "received"
    first.click("#file")
    assert first.inner_text("#filing") == "filed, awaiting a second custodian"
    # The one who filed cannot confirm, in this session or another of their own.
    first.click("#confirm")
    assert "second custodian" in first.inner_text("#error")
    again = login(browser, station, "cus1")
    again.goto(url)
    again.click("#confirm")
    assert "second custodian" in again.inner_text("#error")
    second = login(browser, station, "cus2")
    second.goto(url)
    second.click("#confirm")
    assert second.inner_text("#filing") == "filed"
    body = second.inner_text("main")
    assert "cus1" in body and "cus2" in body
    # A unit head may see the activity but not file it.
    head = login(browser, station, "head")
    head.goto(url)
    assert head.locator("#file, #confirm").count() == 0
    response = head.request.post(url + "/confirm", form={"csrf": "x"})
    assert response.status == 403


@pytest.mark.req("R12.3")
def test_the_unit_head_completes_the_reason_and_approves_the_work_record(browser, station, dock):
    head = login(browser, station, "head")
    head.goto(activity_url(head, station))
    record = head.locator(".work-record").first
    assert record.locator(".review-state").inner_text() == "pending"
    # Approving with the reason still pending is refused.
    record.locator("input[name=comment]").fill("checked against the footage")
    record.locator(".approve").click()
    assert "pending" in head.inner_text("#error")
    head.go_back()
    head.reload()
    record = head.locator(".work-record").first
    record.locator("select[name=reason]").select_option("weather")
    record.locator("input[name=note]").fill("downpour, as the footage shows")
    record.locator("input[name=comment]").fill("reason completed at the dock; approved")
    record.locator(".approve").click()
    assert head.locator(".work-record .review-state").first.inner_text() == "approved"
    # The review is signed by the dock: checked with the dock's public key alone.
    store = Store(dock / "archive")
    body, signature = store.one("SELECT body, signature FROM reviews")
    store.close()
    review = json.loads(body)
    assert review["decision"] == "approved" and review["reviewer"] == "head"
    assert review["reason_completed"]["key"] == "weather"
    public = load_pem_public_key((dock / "dock" / "keys" / "dock_ed25519.pub.pem").read_bytes())
    public.verify(base64.b64decode(signature), canonical(review))
    # A custodian cannot review.
    custodian = as_user(browser, station, "cus1")
    custodian.goto(activity_url(custodian, station))
    assert custodian.locator(".work-record .approve").count() == 0


@pytest.mark.req("R14.1")
def test_a_recording_plays_in_the_page_and_shows_its_stamp(browser, station, dock):
    page = as_user(browser, station, "legal")
    page.goto(activity_url(page, station))
    assert page.inner_text("#verification") == "all seals valid, every gap explained"
    video = page.locator("video").nth(1)
    video.evaluate("v => v.play()")
    page.wait_for_function("v => v.currentTime > 1.0", arg=video.element_handle(), timeout=15000)
    state = video.evaluate("v => ({t: v.currentTime, w: v.videoWidth, err: v.error})")
    assert state["t"] > 1.0 and state["w"] == 320 and state["err"] is None
    video.evaluate("v => v.pause()")
    # Seeking asks for a range of the MP4: the station answers it.
    video.evaluate("v => { v.currentTime = 12; }")
    page.wait_for_function("v => !v.seeking && v.currentTime >= 12 && v.readyState >= 2",
                           arg=video.element_handle(), timeout=15000)
    picture = Image.open(io.BytesIO(video.screenshot())).convert("L")
    # The stamp (white text, dark outline) sits in the top-left corner of the picture.
    corner = picture.crop((0, 0, picture.width // 2, picture.height // 4))
    pixels = list(corner.tobytes())
    assert sum(p > 235 for p in pixels) > 200 and sum(p < 30 for p in pixels) > 200
    # Nothing decrypted was left on disk: the archive holds ciphertext only.
    assert not [p for p in (dock / "archive").rglob("*") if p.suffix in (".ts", ".mp4", ".jpg")]


@pytest.mark.req("R6.2")
def test_a_custodian_sets_the_matter_type_at_the_dock(browser, station):
    page = as_user(browser, station, "cus1")
    page.goto(activity_url(page, station))
    page.select_option("#matter-select", "investigation")
    page.click("#set-matter")
    assert page.inner_text("#matter") == "investigation and evidence collection"
    page.goto(f"{station}/activities?matter=investigation")
    assert page.locator("#activities a").count() == 1
    page.goto(f"{station}/activities?matter=hearing")
    assert page.locator("#activities a").count() == 0


@pytest.mark.req("R15.1", "R15.2", "R16.1")
def test_a_hold_refuses_a_purge(browser, station):
    page = as_user(browser, station, "cus1")
    url = activity_url(page, station)
    page.goto(url)
    page.fill("#hold-reason", "the party has complained")
    page.click("#place-hold")
    assert page.locator("#on-hold").count() == 1
    page.click("#request-purge")
    refusal = page.inner_text("#error")
    assert "purge refused" in refusal and "on hold" in refusal
    assert "long-term" in refusal and "not expired" in refusal
    page.goto(url)
    assert page.locator("video").count() > 0  # nothing was purged


@pytest.mark.req("R4.1", "R13.4")
def test_check_out_and_in_in_the_ledger_page(browser, station):
    page = as_user(browser, station, "cus1")
    page.goto(f"{station}/ledger")
    page.fill("#check-out input[name=officer]", "OFF-0520")
    page.click("#check-out button")
    assert "OFF-0520" in page.inner_text("main")
    page.click(".check-in button")
    rows = page.locator(".ledger tr").all_inner_texts()
    assert any("BC-0001" in r and "—" not in r for r in rows[1:])


@pytest.mark.req("R17.1")
def test_the_yearly_review_as_a_page_a_pdf_and_csv(browser, station):
    page = as_user(browser, station, "legal")
    page.goto(f"{station}/yearly?from=2026-01-01&to=2026-12-31")
    table = page.inner_text("#report")
    assert "officer: OFF-0417" in table and "device: BC-0001" in table
    assert page.locator("svg.chart").count() == 3
    pdf = page.request.get(station + page.get_attribute("#pdf", "href"))
    assert pdf.headers["content-type"] == "application/pdf" and pdf.body()[:5] == b"%PDF-"
    csv = page.request.get(station + page.get_attribute("#csv", "href")).text()
    officer = next(line for line in csv.splitlines() if line.startswith("officer,OFF-0417"))
    assert officer.split(",")[2] == "1"  # one activity
    viewer = page.context.new_page()  # the PDF opens in the browser
    response = viewer.goto(station + page.get_attribute("#pdf", "href"))
    assert response.ok and response.headers["content-type"] == "application/pdf"


def test_a_custodian_cannot_reach_the_administrators_pages(browser, station):
    page = as_user(browser, station, "cus1")
    for path in ("/admin/users", "/access-log"):
        response = page.goto(station + path)
        assert response.status == 403
        assert "may not open" in page.inner_text("#error")
    admin = login(browser, station, "admin")
    assert admin.goto(f"{station}/admin/users").status == 200
    # Logged out, the session is gone at the server too.
    cookies = admin.context.cookies()
    admin.click("#logout")
    fresh = browser.new_context(ignore_https_errors=True)
    fresh.add_cookies(cookies)
    stale = fresh.new_page()
    stale.goto(f"{station}/admin/users")
    assert stale.url.startswith(f"{station}/login")


def test_a_wrong_password_is_locked_out(browser, station):
    page = login(browser, station, "lockme", "not-the-password")
    for attempt in range(2, accounts.MAX_FAILURES + 2):
        if attempt <= accounts.MAX_FAILURES:
            assert page.inner_text("#error") == "Wrong user name or password."
        page.fill("#user", "lockme")
        # The fifth wrong password locks; then the right one is refused as well.
        page.fill("#password", "not-the-password" if attempt <= accounts.MAX_FAILURES
                  else PASSWORDS["lockme"][1])
        page.click("#login")
        if attempt >= accounts.MAX_FAILURES:
            assert "locked" in page.inner_text("#error")
    assert page.url.startswith(f"{station}/login")
    assert page.locator("#logout").count() == 0
    # The administrator lifts the lock in the page; then the right password works.
    admin = login(browser, station, "admin")
    admin.goto(f"{station}/admin/users")
    admin.locator("#users tr", has_text="lockme").locator(".unlock").click()
    assert admin.locator("#users tr", has_text="lockme").locator(".unlock").count() == 0
    page = login(browser, station, "lockme")
    assert page.locator("#logout").count() == 1


def test_pages_speak_chinese(browser, station):
    page = login(browser, station, "cus1", lang="zh-CN")
    page.goto(f"{station}/activities")
    assert "执法活动" in page.inner_text("main")


@pytest.mark.req("R14.2")
def test_the_access_log_verifies_and_names_every_view_and_export(browser, station, dock):
    page = as_user(browser, station, "legal")
    url = activity_url(page, station)
    page.goto(url)
    video = page.locator("video").first.get_attribute("data-file")
    photo = page.locator("a.download").first.get_attribute("href")
    page.request.get(station + photo.split("?")[0])  # viewed
    page.request.get(station + photo)  # downloaded
    played = page.request.get(station + page.locator("video").first.get_attribute("src"))
    assert played.ok and played.headers["content-type"] == "video/mp4"
    export = page.request.get(url + "/export.zip")
    assert export.ok and export.body()[:2] == b"PK"
    assert page.request.get(station + "/yearly.pdf").ok
    page.goto(url + "/custody")
    chain = page.locator("#custody .what").all_inner_texts()
    steps = ["recorded", "uploaded", "verified", "view", "play", "photo", "download", "export"]
    # Filed and reviewed by the tests above (when they ran in this session).
    store = Store(dock / "archive")
    steps += ["filed"] * bool(store.one("SELECT 1 FROM filings"))
    steps += ["reviewed"] * bool(store.one("SELECT 1 FROM reviews"))
    store.close()
    for step in steps:
        assert step in chain, step
    log = dock / "archive" / "station-access.jsonl"
    check = subprocess.run([sys.executable, "-m", "bodycam", "log", str(log), "--verify"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "audit log intact" in check.stdout
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    seen = {(e["kind"], e["fields"].get("user"), e["fields"].get("file")) for e in entries}
    assert ("play", "legal", video) in seen
    assert ("download", "legal", photo.split("/")[-1].split("?")[0]) in seen
    assert any(e["kind"] == "export" and e["fields"]["user"] == "legal" for e in entries)
    assert any(e["kind"] == "view" and e["fields"].get("activity") for e in entries)
    assert any(e["kind"] == "download" and e["fields"].get("what") == "yearly.pdf" for e in entries)
    assert all(e["fields"].get("from") == "127.0.0.1" for e in entries if e["kind"] != "checkpoint")
    # An edited line breaks the chain, and the check says so.
    lines = log.read_bytes().splitlines(keepends=True)
    tampered = dock / "tampered.jsonl"
    edited = lines[3].replace(b'"from":"127.0.0.1"', b'"from":"10.9.9.9"')
    assert edited != lines[3]
    tampered.write_bytes(b"".join(lines[:3] + [edited] + lines[4:]))
    broken = subprocess.run([sys.executable, "-m", "bodycam", "log", str(tampered), "--verify"],
                            capture_output=True, text=True)
    assert broken.returncode == 1
