"""``config/dock.toml``: the dock's directories, broker and enrolment endpoint, validated like
device.toml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dock.quota import Quota
from firmware_py.config import CONFIG_DIR, build, read_toml, setting
from firmware_py.config import reference_markdown as _reference


@dataclass(frozen=True)
class DockSection:
    id: str = setting("dock-1", "Name the dock signs its receipts with.",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    dir: str = setting("dock", "Keys, CA and the enrolled devices.")
    archive: str = setting("archive", "Verified evidence and its SQLite index.")


@dataclass(frozen=True)
class BrokerSection:
    mode: str = setting("embedded", "Which broker devices reach the dock by.",
                        choices=("embedded", "mosquitto", "external"))
    host: str = setting("127.0.0.1", "Address the broker listens on (embedded, mosquitto; "
                        "`0.0.0.0`: every interface) or, for external, the broker to reach.",
                        pattern=r"^[A-Za-z0-9._:-]+$")
    port: int = setting(0, "Broker port; 0 picks a free one (embedded, mosquitto).",
                        min=0, max=65535)
    names: tuple[str, ...] = setting((), "Host names and IP addresses devices reach the dock "
                                     "by (mosquitto): the broker's certificate names them all, "
                                     "with `localhost`, `127.0.0.1` and a concrete `host`; a "
                                     "certificate that lacks one is issued again at start.",
                                     pattern=r"^[A-Za-z0-9._:-]{1,253}$")


@dataclass(frozen=True)
class DeadlineSection:
    upload_hours: float = setting(24.0, "R13.4: evidence not all stored this long after "
                                  "the device's return is flagged overdue.", min=1, max=720)
    dock_every_hours: float = setting(72.0, "A device not docked for this long is flagged.",
                                      min=1, max=8760)


@dataclass(frozen=True)
class EnrolmentSection:
    enabled: bool = setting(True, "Serve enrolment over the network (HTTPS) while the dock "
                            "runs: a recorder redeems a code from `bodycam dock enroll-code`.")
    host: str = setting("127.0.0.1", "Address the enrolment endpoint listens on (0.0.0.0: "
                        "every interface, for recorders on the dock's network).")
    port: int = setting(8884, "Its port; 0 picks a free one.", min=0, max=65535)
    attempts_per_minute: int = setting(10, "Enrolment requests one source address may make "
                                       "in a minute.", min=1, max=1000)


@dataclass(frozen=True)
class TimestampSection:
    url: str = setting("", "RFC 3161 time-stamping authority asked for a token over each "
                       "device's chain head at filing; empty: the unit's own TSA (`openssl ts`, "
                       "its certificate from the dock's CA in `tsa/`).",
                       pattern=r"^(|https?://[^\s]+)$")


@dataclass(frozen=True)
class LimitsSection:
    max_file_gib: float = setting(256.0, "A file announced larger than this is refused: more "
                                  "than a recorder's storage holds.", min=0.001, max=65536)
    device_open_files: int = setting(512, "Incoming files one device may have open at once "
                                     "(abandoned ones count until they expire).",
                                     min=1, max=1_000_000)
    device_in_flight_gib: float = setting(256.0, "Bytes still to come for one device's open "
                                          "incoming files, at most.", min=0.001, max=65536)
    reserve_gib: float = setting(1.0, "Free space the archive's file system keeps: below it "
                                 "new files are refused (devices keep theirs).", min=0, max=65536)
    partial_expiry_hours: float = setting(168.0, "An incoming file with no progress for this "
                                          "long is abandoned: its partial bytes are removed "
                                          "and logged.", min=0.01, max=87600)

    def quota(self) -> Quota:
        gib = 1 << 30
        return Quota(max_file_bytes=int(self.max_file_gib * gib),
                     device_open_files=self.device_open_files,
                     device_bytes_in_flight=int(self.device_in_flight_gib * gib),
                     reserve_bytes=int(self.reserve_gib * gib),
                     partial_expiry_s=self.partial_expiry_hours * 3600)


@dataclass(frozen=True)
class DockConfig:
    dock: DockSection = field(default_factory=DockSection)
    broker: BrokerSection = field(default_factory=BrokerSection)
    deadline: DeadlineSection = field(default_factory=DeadlineSection)
    enrolment: EnrolmentSection = field(default_factory=EnrolmentSection)
    timestamp: TimestampSection = field(default_factory=TimestampSection)
    limits: LimitsSection = field(default_factory=LimitsSection)


def load(path: Path | None = None) -> DockConfig:
    path = path or CONFIG_DIR / "dock.toml"
    return build(DockConfig, read_toml(path), str(path))


def reference_markdown() -> str:
    """The README's reference table of ``config/dock.toml`` (scripts/update_readme.py)."""
    return _reference((("dock.toml", DockConfig),))
