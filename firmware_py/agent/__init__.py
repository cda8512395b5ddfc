"""The agent: the core (a pure state machine, ``core``, with its ``events`` and actions),
the edge that runs it against the hardware (``edge``: the loop and the action handlers),
the ``watchdogs`` over camera, microphone, clock and garbage input, ``startup`` (clock
resume, seal recovery, power-cut detection, heartbeat), the ``selfcheck``, the
indicators' ``signals``, and the ``docking`` hook."""
