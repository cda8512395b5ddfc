"""Hardware layer of the recorder: one small typed protocol per part, and the real backends.

Each module beside ``hardware`` (the ``Hardware`` bundle) holds the protocol of one part
(camera, microphone, speaker, inputs, indicators, GNSS, power, storage, clock) and the
records it hands over; ``clock`` also holds ``DeviceClock``, the one clock implementation,
which runs on whatever raw wall and monotonic sources a backend hands it. The backends that
talk to real hardware live in ``device.backends``. Hardware-only libraries (picamera2,
sounddevice, lgpio) are imported inside the backend that needs them, never at module
import, so the package loads on any machine. The simulated backends live in the top-level
``simulator`` package and satisfy the same protocols; which set is used is chosen by
configuration (``hardware = "pi"`` or ``"sim"``), the way gpiozero chooses a pin factory.
"""

from device.hardware import Hardware, HardwareError

__all__ = ["Hardware", "HardwareError"]
