"""Interruptions (Art. 12, R12.1–R12.3): every stop before the activity ends, with its reason.

An interruption opens when recording stops inside an open activity and closes when the
recording resumes or the activity ends. Its reason comes from the regulation's list in
``config/policy.toml``: reason 1 (device fault, low battery, full storage) is recorded by
the device itself; reasons 2–4 are chosen by the officer with marker presses after the
voice prompt, or left *pending* for the dock. The record is plain data; the work record
written from it (``firmware_py.fieldwork.workrecord``) is what the unit head reviews.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

PENDING = "pending"
DEVICE = "device"


@dataclass(frozen=True)
class Interruption:
    activity: str
    number: int  # 1, 2, … within the activity
    stopped_at: float  # monotonic
    reason: str  # a key of policy.interruption.reasons, or "pending"
    chosen_by: str  # "device", the officer's id, "officer" when unassigned, or "pending"
    detail: str = ""  # what the device saw: "battery at 3 %", "camera: no frames for 3 s"
    resumed_at: float | None = None  # monotonic; None while still open
    closed_by: str = ""  # "resumed" or "activity_end"

    @property
    def automatic(self) -> bool:
        return self.chosen_by == DEVICE

    @property
    def off_s(self) -> float | None:
        return None if self.resumed_at is None else self.resumed_at - self.stopped_at

    def with_reason(self, reason: str, chosen_by: str) -> "Interruption":
        return replace(self, reason=reason, chosen_by=chosen_by)

    def closed(self, at: float, by: str) -> "Interruption":
        return replace(self, resumed_at=at, closed_by=by)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["off_s"] = None if self.off_s is None else round(self.off_s, 3)
        data["automatic"] = self.automatic
        return data
