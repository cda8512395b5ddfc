"""The shift harness: the simulated recorder put together and driven through a scenario.

Above the simulated parts (``simulator.*``, which import only ``device/``) and allowed to
import ``firmware_py/``, ``sync/`` and ``dock/`` as well:

- ``scenario``: scenario files (TOML, shipped ones in ``scenarios/``) — presses, the
  route, faults, docking, power cuts — parsed and checked;
- ``world``: ``build_world`` puts every simulated part on one virtual clock and wires them
  as on a Pi into the ``Hardware`` bundle (``SimWorld``; ``PowerOff`` for a restart);
- ``runner``: ``Simulation``, the real agent on that world, frame by frame in virtual time;
- ``powercut``: stretches of a scenario in child processes killed at each power cut;
- ``run``: ``run_scenario``, either of the two above as the scenario needs;
- ``soak``: a seeded eight-hour shift built as scenario data.
"""
