"""The composition root: the ``bodycam`` command line and the wiring behind it.

Everything below this package is built here and nowhere else: the agent for ``sim`` or
``pi`` hardware with its paths, audit log and keys, the docking hook that starts the
device's sync (``bodycam.docking``), the dock service, and the simulator's runs. The
command line is split by who uses it: the recorder (``device_commands``), the dock
(``dock_commands``), evidence checks for anyone (``evidence_commands``) and simulation
(``sim_commands``).
"""
