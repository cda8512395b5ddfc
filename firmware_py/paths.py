"""Every path under the device root, named in one place.

The device root holds the device's keys and enrolment, its audit log and the speech
cache and the last trusted time; the evidence directory (configured ``device.evidence_dir``: under the root unless
absolute) holds the evidence and the store's own dot-files beside it — the sequence and
chain state, the last clock correction, the heartbeat. The sync's own files
(``sync.device_sync``) are named there.

The names relative to their directory are module constants (the key files are named the
same way under the agency's dock directory); ``DeviceLayout`` puts them under one device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from firmware_py.config import DeviceConfig

# Under the device root.
AUDIT_LOG = "audit.jsonl"
SPEECH_CACHE = "speech-cache"
KEYS = Path("keys")
DEVICE_KEY = KEYS / "device_ed25519.pem"
DEVICE_PUB = KEYS / "device_ed25519.pub.pem"
AGENCY_PUB = KEYS / "agency_x25519.pub.pem"
AGENCY_KEY = KEYS / "agency_x25519.pem"  # in the agency's dock directory only
ENROLLMENT = Path("enrollment.json")
TRUSTED_TIME = "trusted-time.json"  # the last trusted time seen: no GNSS time before it is used
RTC_STATE = "rtc.json"  # when the RTC was last written from a trusted time

# In the evidence directory, beside the evidence.
DEVICE_STATE = ".device-state.json"  # next sequence number and chain head
CLOCK_STATE = ".clock.json"  # the last clock correction (GNSS or dock)
HEARTBEAT = ".alive"  # the UTC of the latest sign of life, rewritten in place


def evidence_dir(root: Path, configured: str | Path) -> Path:
    """The configured evidence directory: under ``root`` unless absolute."""
    path = Path(configured)
    return path if path.is_absolute() else Path(root) / path


@dataclass(frozen=True)
class DeviceLayout:
    """Where one device keeps its files: ``root`` and its ``evidence`` directory."""

    root: Path
    evidence: Path

    @classmethod
    def from_config(cls, root: str | Path, device: DeviceConfig) -> "DeviceLayout":
        root = Path(root)
        return cls(root, evidence_dir(root, device.device.evidence_dir))

    @property
    def audit_log(self) -> Path:
        return self.root / AUDIT_LOG

    @property
    def speech_cache(self) -> Path:
        return self.root / SPEECH_CACHE

    @property
    def keys(self) -> Path:
        return self.root / KEYS

    @property
    def device_key(self) -> Path:
        return self.root / DEVICE_KEY

    @property
    def device_pub(self) -> Path:
        return self.root / DEVICE_PUB

    @property
    def agency_pub(self) -> Path:
        return self.root / AGENCY_PUB

    @property
    def enrollment(self) -> Path:
        return self.root / ENROLLMENT

    @property
    def trusted_time(self) -> Path:
        return self.root / TRUSTED_TIME

    @property
    def rtc_state(self) -> Path:
        return self.root / RTC_STATE

    @property
    def device_state(self) -> Path:
        return self.evidence / DEVICE_STATE

    @property
    def clock_state(self) -> Path:
        return self.evidence / CLOCK_STATE

    @property
    def heartbeat(self) -> Path:
        return self.evidence / HEARTBEAT
