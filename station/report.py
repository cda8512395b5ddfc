"""The yearly review (R17.1): per officer and per device over a period — activities by
matter type, recording hours, interruptions by reason, late uploads, failed self-checks,
unassigned use, activities not filed, work records not reviewed — as rows for the page,
CSV and PDF (reportlab; Chinese through its built-in STSong-Light CID font, so no font
file is needed)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from station.catalogue import Activity, Catalogue
from station.review import latest

COLUMNS = ("subject", "name", "activities", "recording_hours", "interruptions",
           "late_uploads", "failed_selfchecks", "unassigned", "not_filed", "not_reviewed",
           "by_matter", "by_reason")


@dataclass
class Row:
    subject: str  # officer | device
    name: str
    activities: int = 0
    recording_hours: float = 0.0
    interruptions: int = 0
    late_uploads: int = 0
    failed_selfchecks: int = 0
    unassigned: int = 0
    not_filed: int = 0
    not_reviewed: int = 0
    by_matter: Counter = field(default_factory=Counter)
    by_reason: Counter = field(default_factory=Counter)

    def flat(self) -> dict[str, Any]:
        return {"subject": self.subject, "name": self.name, "activities": self.activities,
                "recording_hours": round(self.recording_hours, 3),
                "interruptions": self.interruptions, "late_uploads": self.late_uploads,
                "failed_selfchecks": self.failed_selfchecks, "unassigned": self.unassigned,
                "not_filed": self.not_filed, "not_reviewed": self.not_reviewed,
                "by_matter": json.dumps(dict(self.by_matter), ensure_ascii=False),
                "by_reason": json.dumps(dict(self.by_reason), ensure_ascii=False)}


@dataclass
class Review:
    start: float
    end: float
    rows: list[Row]
    by_matter: Counter
    by_reason: Counter
    hours_by_officer: dict[str, float]


def build(catalogue: Catalogue, start: float, end: float,
          overdue: set[tuple[str, str]]) -> Review:
    rows: dict[tuple[str, str], Row] = {}

    def row(subject: str, name: str) -> Row:
        return rows.setdefault((subject, name or "—"), Row(subject, name or "—"))

    totals_matter: Counter = Counter()
    totals_reason: Counter = Counter()
    for a in catalogue.activities(overdue):
        when = a.opened_utc or 0
        if not start <= when < end:
            continue
        subjects = [row("officer", a.officer or "UNASSIGNED"), row("device", a.device)]
        hours = _recording_hours(catalogue, a)
        reviewed = latest(catalogue.store, a.device, a.id)
        records = catalogue.work_records(a.device, a.id) if not a.purged else []
        reasons = [_reason(i, reviewed) for i in a.interruptions]
        for r in subjects:
            r.activities += 1
            r.recording_hours += hours
            r.by_matter[a.matter] += 1
            r.interruptions += len(a.interruptions)
            r.by_reason.update(reasons)
            r.late_uploads += a.overdue
            r.unassigned += a.unassigned
            r.not_filed += a.filing != "filed"
            r.not_reviewed += sum(1 for w in records
                                  if reviewed.get(w["name"], {}).get("state") != "approved")
        totals_matter[a.matter] += 1
        totals_reason.update(reasons)
    for device in sorted({d for d, _ in catalogue.keys()}):
        for failed in _failed_selfchecks(catalogue, device, start, end):
            row("device", device).failed_selfchecks += 1
            row("officer", failed or "UNASSIGNED").failed_selfchecks += 1
    ordered = sorted(rows.values(), key=lambda r: (r.subject != "officer", r.name))
    return Review(start, end, ordered, totals_matter, totals_reason,
                  {r.name: round(r.recording_hours, 2) for r in ordered if r.subject == "officer"})


def _reason(interruption: dict[str, Any], reviewed: dict[str, dict[str, Any]]) -> str:
    """The interruption's reason: the officer's, or the one completed at the dock."""
    reason = str(interruption.get("reason") or "pending")
    number = interruption.get("number")
    if reason == "pending" and isinstance(number, int):
        completed = (reviewed.get(f"interruption-{number:02d}.json", {}).get("body") or {}
                     ).get("reason_completed")
        if completed:
            return str(completed["key"])
    return reason


def _recording_hours(catalogue: Catalogue, a: Activity) -> float:
    spans = catalogue.index("SELECT start_ms, end_ms FROM seals WHERE device=? AND activity=? "
                            "AND kind='segment'", a.key)
    return sum((e - s) for s, e in spans if s is not None and e is not None) / 3_600_000


def _failed_selfchecks(catalogue: Catalogue, device: str, start: float, end: float) -> list[str]:
    """The officer (or '') of each failed self-check the device's audit log holds."""
    failed, officer = [], ""
    for path in catalogue.audit_logs(device):
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            fields = entry.get("fields") or {}
            if entry.get("kind") == "boot":
                officer = fields.get("officer") or ""
            when = (entry.get("time") or {}).get("utc") or 0
            if (entry.get("kind") == "selfcheck" and fields.get("passed") is False
                    and start <= when < end):
                failed.append(officer)
    return failed


def csv_text(review: Review) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for r in review.rows:
        writer.writerow(r.flat())
    return out.getvalue()


def pdf_bytes(review: Review, unit: str) -> bytes:
    """The review as a landscape A4 PDF, titled in both languages."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    styles = getSampleStyleSheet()
    for style in styles.byName.values():
        style.fontName = "STSong-Light"
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=landscape(A4), title="Yearly review",
                            author=unit or "bodycam station")
    day = lambda ts: datetime.fromtimestamp(ts, timezone.utc).date().isoformat()  # noqa: E731
    title = "执法音像记录年度评查 Yearly review of audio-visual recording"
    story = [Paragraph(title, styles["Title"]),
             Paragraph(f"{unit} — {day(review.start)} … {day(review.end)}", styles["Normal"]),
             Spacer(1, 12)]
    head = ["", "activities", "hours", "interruptions", "late uploads", "failed self-checks",
            "unassigned", "not filed", "not reviewed"]
    data = [head] + [[f"{r.subject}: {r.name}", r.activities, f"{r.recording_hours:.2f}",
                      r.interruptions, r.late_uploads, r.failed_selfchecks, r.unassigned,
                      r.not_filed, r.not_reviewed] for r in review.rows]
    table = Table(data, repeatRows=1)
    table.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), "STSong-Light", 9),
                               ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey)]))
    story += [table, Spacer(1, 12),
              Paragraph("By matter type: " + ", ".join(f"{k} {v}" for k, v in
                                                       review.by_matter.items()), styles["Normal"]),
              Paragraph("Interruptions by reason: " + (", ".join(
                  f"{k} {v}" for k, v in review.by_reason.items()) or "none"), styles["Normal"])]
    doc.build(story)
    return buffer.getvalue()
