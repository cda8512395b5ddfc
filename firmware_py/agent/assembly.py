"""The one place the agent is put together from its parts.

The composition root (the command line, for ``sim`` or ``pi`` hardware) and the simulator
call ``assemble``; the ``Agent`` itself builds none of its parts.
"""

from __future__ import annotations

from device.hardware import Hardware
from firmware_py.agent.core import AgentCore, State
from firmware_py.agent.docking import Docking
from firmware_py.agent.edge import Agent
from firmware_py.agent.signals import SignalDriver
from firmware_py.agent.timekeeping import TimeKeeping
from firmware_py.config import Config
from firmware_py.evidence.audit import AuditLog
from firmware_py.evidence.keys import DeviceIdentity, device_identity
from firmware_py.evidence.seal import Sealer
from firmware_py.evidence.store import EvidenceStore
from firmware_py.fieldwork.speech import PhraseRenderer, PolicyClips
from firmware_py.paths import DeviceLayout
from firmware_py.recording.pipeline import Recorder, RecordingPipeline
from firmware_py.recording.stamp import FrameStamps


def assemble(config: Config, hardware: Hardware, audit: AuditLog,
             layout: DeviceLayout | None = None, *, docking: Docking | None = None,
             pipeline: RecordingPipeline | None = None,
             identity: DeviceIdentity | None = None) -> Agent:
    """The agent for ``hardware``, writing under ``layout``.

    Without ``layout``, the device root is the parent of the hardware's storage path (the
    evidence directory), as the agent always took it. ``pipeline`` replaces the
    ``Recorder`` (a benchmark's or a test's); ``identity`` the enrolled device identity
    read from the root; ``docking`` is told when the device is docked and undocked.
    The audit log is signed with the device's key from here on.
    """
    if layout is None:
        layout = DeviceLayout(hardware.storage.path.parent, hardware.storage.path)
    clock = hardware.clock
    identity = identity or device_identity(layout.root, config.device.device.id)
    store = EvidenceStore(layout.evidence, config.device.device.id)
    sealer = Sealer(identity, store)
    audit.sign_with(identity.signing_key.sign, identity.key_id)
    time = TimeKeeping(clock)
    if pipeline is None:
        pipeline = Recorder(config.device, clock, store, sealer, time.quality)
    core = AgentCore(config)
    speech = PolicyClips(PhraseRenderer(layout.speech_cache, config.device.audio.sample_rate),
                         config.policy)
    stamps = FrameStamps(config.device, clock, hardware.gnss,
                         lambda: core.state is State.RECORDING)
    return Agent(config, hardware, audit, layout=layout, store=store, sealer=sealer,
                 pipeline=pipeline, speech=speech, stamps=stamps, core=core,
                 signals=SignalDriver(hardware.indicators), time=time, docking=docking)
