"""A recorder that boots without enrolment: it says so, then stays out of the way.

A recorder not enrolled with its unit must not record (R18.3). Run by hand, ``bodycam
run`` says so in one line and exits; run as a service on a Pi, exiting would only have
systemd start it again every few seconds, with a line in the journal each time. Instead
the recorder shows ``unenrolled`` on its LEDs, says once, in the policy's languages, that
it is not enrolled and where to enrol it, tells systemd it is up (``STATUS=not enrolled``)
and keeps its watchdog fed, and looks for the enrolment every ``poll_s`` — enrolment over
the network (``bodycam enroll --code``) writes it — going on to run the recorder the
moment it appears. Nothing else is opened: no camera, no microphone; nothing is written
but the rendered speech's cache.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from device.indicators import Indicators
from device.speaker import Speaker
from firmware_py.agent.signals import SignalDriver, Signal
from firmware_py.agent.supervision import ServiceNotifier
from firmware_py.config import Phrase
from firmware_py.evidence.keys import NotEnrolledError, require_enrolled
from firmware_py.fieldwork.speech import PhraseRenderer

log = logging.getLogger(__name__)

NOT_ENROLLED_SPEECH = (
    Phrase(language="cmn", voice="cmn-latn-pinyin", text="本记录仪尚未登记，不能录像。请在基站登记。",
           speak="ben3 ji4 lu4 yi2 shang4 wei4 deng1 ji4, bu4 neng2 lu4 xiang4. "
                 "qing3 zai4 ji1 zhan4 deng1 ji4."),
    Phrase(language="en", voice="en",
           text="This recorder is not enrolled and cannot record. Enrol it at the dock."),
)


def wait_for_enrolment(root: Path, device_id: str, stop: threading.Event, *,
                       indicators: Indicators, speaker: Speaker, renderer: PhraseRenderer,
                       supervisor: ServiceNotifier | None = None, poll_s: float = 2.0,
                       monotonic: Callable[[], float] = time.monotonic) -> bool:
    """Signal, speak once, and wait until ``root`` is enrolled (True) or ``stop`` (False)."""
    signals = SignalDriver(indicators)
    signals.show(Signal.UNENROLLED)
    try:
        clip = renderer.script(NOT_ENROLLED_SPEECH, 0.4)
        speaker.play(clip.samples, clip.sample_rate)
    except Exception as exc:  # a mute recorder still shows it on its LEDs
        log.warning("could not say that the recorder is not enrolled: %s", exc)
    if supervisor is not None:
        supervisor.ready("not enrolled: enrol at the dock (bodycam enroll --code)")
    next_look = monotonic()
    try:
        while not stop.wait(0.05):
            now = monotonic()
            signals.update(now)
            if supervisor is not None:
                supervisor.alive()
            if now >= next_look:
                next_look = now + poll_s
                try:
                    require_enrolled(root, device_id)
                except NotEnrolledError:
                    continue
                log.info("enrolled now: starting the recorder")
                return True
        return False
    finally:
        speaker.stop()
        for output in indicators.state():
            indicators.set(output, False)
        indicators.update(monotonic())
