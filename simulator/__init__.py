"""Simulated hardware for CI and demos: the same protocols as ``device/``, in virtual time.

Every simulated part reads one ``VirtualClock``; the scenario runner advances it frame by
frame, so a ten-minute shift runs in seconds and a test never sleeps. Where a PC can run
the real code path it does: NMEA goes through a pseudo-terminal into the real serial
reader, buttons and LEDs are gpiozero devices on ``MockFactory`` pins, the battery is a
sysfs ``power_supply`` tree read by the real sysfs backend, video is real H.264.

The modules here are the simulated parts (``audio``, ``battery``, ``buttons``, ``camera``,
``clock``, ``gnss``, ``scene``, ``storage``) and import only ``device/``. What builds the
simulated recorder from a configuration and runs a shift on it — scenarios, the world
builder, the runner, power cuts, the soak — is the harness, ``simulator.harness``.
"""
