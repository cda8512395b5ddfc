"""What the agent core is told (events) and what it asks the edge to do (actions).

Plain frozen dataclasses, in the manner of h11's events: the core reads events and
returns actions, and never touches hardware, files or threads itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from device.clock import TimeSource
from device.gnss import GnssFix
from device.inputs import ButtonEvent
from device.power import PowerReading
from device.storage import StorageReading
from firmware_py.fieldwork.interruptions import Interruption
from firmware_py.agent.selfcheck import CheckReason, SelfCheckReport
from firmware_py.agent.signals import Alert, Signal


# --- events: the world, as the edge saw it -----------------------------------------------

@dataclass(frozen=True)
class Booted:
    at: float


@dataclass(frozen=True)
class ButtonGesture:
    event: ButtonEvent


@dataclass(frozen=True)
class SelfCheckDone:
    report: SelfCheckReport


@dataclass(frozen=True)
class GnssUpdate:
    fix: GnssFix
    at: float


@dataclass(frozen=True)
class ClockOffsetMeasured:
    """The device clock against a trusted time: device minus reference at ``at``."""

    source: TimeSource
    offset_s: float
    reference_utc: float
    at: float


@dataclass(frozen=True)
class PowerUpdate:
    reading: PowerReading
    at: float


@dataclass(frozen=True)
class StorageUpdate:
    reading: StorageReading
    hours_free: float  # recording time left before the storage stop (free less the reserve)
    at: float


@dataclass(frozen=True)
class CameraStalled:
    """No usable frame has arrived for the policy's stall time while the camera is on."""

    at: float
    last_frame_at: float | None = None  # monotonic time of the last usable frame
    invalid_frames: int = 0  # frames dropped as garbage since that one


@dataclass(frozen=True)
class CameraResumed:
    at: float


@dataclass(frozen=True)
class MicrophoneFailed:
    """No audio (``fault`` "stopped") or only digital silence ("silent") since ``since``."""

    fault: str
    since: float
    at: float


@dataclass(frozen=True)
class MicrophoneRecovered:
    fault: str
    since: float  # when the fault began
    at: float


@dataclass(frozen=True)
class Tick:
    """Time passed; lets the core notice ages (a fix grown stale) without other events."""

    at: float


@dataclass(frozen=True)
class ActivityContinued:
    """At start, an activity the officer had not ended was found (R8.3): it goes on.

    ``last_number`` is its highest interruption number so far; ``interruption`` one still
    open (a stop not yet resumed), its stop on this run's monotonic clock.
    """

    at: float
    last_number: int
    interruption: Interruption | None = None


@dataclass(frozen=True)
class PowerRestored:
    """At start: the previous run lost its power (its log has no shutdown), Art. 12 (1).

    ``lost_at`` is the last sign of life on this run's monotonic clock; ``recording``
    whether a recording of the open activity was running then; the power reading says
    whether the device came back on the dock or with its battery at the cut-off.
    """

    at: float
    lost_at: float
    off_s: float
    recording: bool
    power: PowerReading | None = None


Event = (Booted | ButtonGesture | SelfCheckDone | GnssUpdate | ClockOffsetMeasured
         | PowerUpdate | StorageUpdate | CameraStalled | CameraResumed | MicrophoneFailed
         | MicrophoneRecovered | Tick | ActivityContinued | PowerRestored)


# --- actions: what the edge must do ------------------------------------------------------

@dataclass(frozen=True)
class StartCamera:
    """Start capture: camera and microphone feed the pipeline (pre-event buffer)."""


@dataclass(frozen=True)
class StopCamera:
    """Stop capture (docked, or the battery at its cut-off)."""


@dataclass(frozen=True)
class BeginSelfCheck:
    reason: CheckReason


@dataclass(frozen=True)
class CorrectClock:
    source: TimeSource
    reference_utc: float
    at: float


@dataclass(frozen=True)
class OpenActivity:
    """Begin an enforcement activity (R5.2): the edge gives it an id and a directory."""


@dataclass(frozen=True)
class EndActivity:
    """The officer ended the activity (R8.3): the edge closes its record."""


@dataclass(frozen=True)
class StartRecording:
    resumed: bool = False  # after an interruption of the same activity


@dataclass(frozen=True)
class StopRecording:
    reason: str = "stop"  # stop, activity_end, battery_cutoff, storage_full, camera_fault


@dataclass(frozen=True)
class Speak:
    """Play a phrase script: "announcement", "prompt", or "reason:<key>"."""

    script: str


@dataclass(frozen=True)
class RecordInterruption:
    """An interruption began (a stop inside an activity): log it in the activity."""

    interruption: Interruption


@dataclass(frozen=True)
class UpdateInterruption:
    """A reason was given (or left pending) while the interruption is still open: log it."""

    interruption: Interruption


@dataclass(frozen=True)
class CloseInterruption:
    """The interruption ended: write, seal and log its work record."""

    interruption: Interruption


@dataclass(frozen=True)
class TakePhoto:
    """Take a full-resolution still into the open activity (R11.1)."""


@dataclass(frozen=True)
class AddMarker:
    incident: bool  # a long press marks an incident for long-term keeping (R16.1)


@dataclass(frozen=True)
class ShowSignal:
    """The steady state the indicators show (replaces the previous one)."""

    signal: Signal


@dataclass(frozen=True)
class RaiseAlert:
    """A one-off pattern on buzzer, vibration and LEDs, over the steady signal."""

    alert: Alert


@dataclass(frozen=True)
class StartSync:
    """The device came on external power (docked): sync finished files with the dock.

    Emitted in any state, a recording going on included: the sync takes only files
    already sealed.
    """


@dataclass(frozen=True)
class StopSync:
    """The device left external power: end any sync session with the dock now."""


@dataclass(frozen=True)
class Log:
    """A line for the audit log (R18.2): ``kind`` names the event, ``fields`` its facts."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


Action = (StartCamera | StopCamera | BeginSelfCheck | CorrectClock | OpenActivity | EndActivity
          | StartRecording | StopRecording | TakePhoto | AddMarker | Speak | RecordInterruption
          | UpdateInterruption | CloseInterruption | ShowSignal | RaiseAlert | StartSync
          | StopSync | Log)
