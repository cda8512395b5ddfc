"""The device agent, in parts (DESIGN.md): ``agent`` (the core, the edge loop, watchdogs,
start-up and recovery), ``recording`` (the pipeline as picamera2-style outputs),
``fieldwork`` (activities, interruptions, work records, speech), ``evidence`` (store,
encrypted files, keys, seals, audit, verify, gaps, export), ``paths`` (every path under
the device root) and ``config``. Imports only ``device/`` below it."""
