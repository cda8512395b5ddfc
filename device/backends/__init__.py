"""The real backends: the protocols of ``device/`` implemented on real hardware and the OS.

One module per kind of backend — ``gpio`` (gpiozero buttons, LEDs, buzzer, vibration
motor), ``nmea`` (GNSS over a serial line, pyserial + pynmea2), ``sysfs_power`` (Linux
``power_supply``), ``statvfs_storage`` (free space of the evidence file system),
``picamera`` (the camera on picamera2, with ``frame_layout`` for its YUV buffers) and
``sounddevice_audio`` (microphone and speaker on PortAudio) — and ``pi``, which wires
them into the ``Hardware`` bundle of a Raspberry Pi-class recorder (``hardware = "pi"``),
the way gpiozero's pin factories sit behind one pin interface.

Hardware-only libraries (picamera2, sounddevice, lgpio) are imported inside the functions
that need them, never at module import, so this package loads on any machine. The
simulator runs ``gpio``, ``nmea`` and ``sysfs_power`` unchanged on its mock pins, pty and
sysfs tree.
"""
