"""The recorder's commands: ``selfcheck``, ``run``, ``log`` and ``enroll``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bodycam.options import (EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, add_config_args, load,
                             print_json)
from simulator.harness.runner import print_entry
from bodycam import control
from bodycam.control import Control, ControlSocket, Keyboard
from bodycam.wiring import SimRecorder, first_selfcheck, open_recorder
from firmware_py.agent.supervision import ServiceNotifier
from firmware_py.config import ConfigError
from firmware_py.evidence import audit
from firmware_py.evidence.keys import KeyFileError, NotEnrolledError, load_registry
from firmware_py.paths import AUDIT_LOG
from simulator.harness import scenario as scenarios
from sync.enrolment import enroll_over_network, parse_address

SIM_SELFCHECK_WITHIN_S = 60.0  # virtual seconds
PI_SELFCHECK_MARGIN_S = 5.0  # beyond the probe window, wall seconds
CONTROL_SOCKET = "control.sock"  # under the root, for a simulated recorder run by hand


def register(sub: Any) -> None:
    p = sub.add_parser("selfcheck", help="run the pre-use self-check (Art. 7) and report",
                       description="Run the pre-use self-check: battery, storage, clock, "
                       "camera, microphone, GNSS. Exit 0 when every check passes (warnings "
                       "pass), 1 when any fails. A failed check never blocks recording.")
    add_config_args(p)
    p.add_argument("--hardware", choices=("sim", "pi"),
                   help="override the configured hardware backends")
    p.add_argument("--scenario", default="patrol", metavar="SCENARIO",
                   help="with sim hardware: scenario whose conditions (battery, storage, "
                   "clock, GNSS) the device starts in: a file or a shipped name "
                   f"({', '.join(scenarios.shipped())}; default: patrol)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="with sim hardware: where the simulated device keeps its files "
                   "(default: a temporary directory)")
    p.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                   help="with pi hardware: the device's directory (default: the current one)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_selfcheck)

    p = sub.add_parser("run", help="run the agent on the configured hardware",
                       description="Run the recorder agent until interrupted. With "
                       "hardware = \"sim\" the simulated recorder runs in real time. When the "
                       "recorder is docked (on external power with the dock of [dock] "
                       "reachable) it syncs its evidence to the dock. A recorder that is not "
                       "enrolled (bodycam dock enroll, or bodycam enroll --code) refuses to "
                       "record: one line, exit code 2.")
    add_config_args(p)
    p.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                   help="working directory of the device (evidence and audit log under it)")
    p.add_argument("--seconds", type=float, metavar="S",
                   help="stop after this many seconds (default: until interrupted)")
    p.add_argument("--control", type=Path, metavar="SOCKET",
                   help="with sim hardware: the control socket that takes the officer's "
                   "buttons and the dock, a command a line (press record, long_press record, "
                   "dock, undock, status, …; default: ROOT/control.sock); at a terminal the "
                   "keyboard does the same")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("install", help="set this Raspberry Pi up as a recorder service",
                       description="On Raspberry Pi OS, as root: install the extra packages "
                       "(apt), create the bodycam user in the groups video, audio, gpio, i2c "
                       "and dialout, the device root /var/lib/bodycam, /etc/bodycam with the "
                       "shipped device.toml (hardware = \"pi\") and policy.toml (existing "
                       "files are kept), and the systemd unit, then enable it. Says what it "
                       "does; --dry-run only says what it would do.")
    p.add_argument("--root", type=Path, default=Path("/"), metavar="PREFIX",
                   help="write the files under PREFIX (an image, a test); apt, the user and "
                   "systemctl are then only listed (default: /)")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("control", help="press a simulated recorder's buttons, dock it, ask "
                       "its status",
                       description="Send commands to a simulated recorder started with "
                       "`bodycam run` (its control socket), one answer printed per command, "
                       "then optionally wait until it reaches a state. Exit 1 when a command "
                       "was refused or the wait timed out.")
    p.add_argument("target", type=Path, metavar="ROOT|SOCKET",
                   help="the recorder's root (its control.sock) or the socket itself")
    p.add_argument("commands", nargs="*", metavar="COMMAND",
                   help="each one quoted: 'press record', 'long_press record', 'hold photo 2', "
                   "dock, undock, 'fault gnss_lost 30', 'recover gnss', status")
    p.add_argument("--wait", metavar="STATE", help="then wait for a state (ready, recording, "
                   "docked, …) or for 'synced' (a sync session ended)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="how long to wait (default 60 s; also how long the socket may take "
                   "to appear)")
    p.set_defaults(func=cmd_control)

    p = sub.add_parser("log", help="print the device's audit log and check its chain",
                       description="Print the audit log (R18.2). Every entry carries the "
                       "hash of the one before; --verify only checks the chain. Exit 0 when "
                       "the chain is intact, 1 when an entry was altered, removed or reordered.")
    p.add_argument("path", nargs="?", default=Path("."), type=Path, metavar="PATH",
                   help="audit.jsonl, or a directory holding it (a device root, or a "
                   "simulate --out directory); default: the current directory")
    p.add_argument("--verify", action="store_true", help="check the chain, print one line")
    p.add_argument("--trust", type=Path, metavar="DIR",
                   help="enrolled devices (a dock directory): also check the signed checkpoints")
    p.add_argument("--json", action="store_true", help="print entries (or the result) as JSON")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("enroll", help="enrol this recorder over the dock's network with a code",
                       description="Enrol the recorder (R18.3) with the dock at HOST[:PORT] "
                       "(its `bodycam dock serve`) for a one-time code from `bodycam dock "
                       "enroll-code`. The signing key and the MQTT client key are made here and "
                       "never sent; the dock's CA is pinned by the code. Afterwards `bodycam run "
                       "--root DIR` uses DIR as it is. A dock that can write the device root "
                       "directly uses `bodycam dock enroll` instead (docs/enrolment.md).")
    p.add_argument("--dock", required=True, metavar="HOST[:PORT]",
                   help="the dock's enrolment endpoint (port default 8884)")
    p.add_argument("--code", required=True, metavar="CODE", help="the one-time enrolment code")
    p.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                   help="the recorder's device root (default: the current directory)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_enroll)


# --- selfcheck ---------------------------------------------------------------------------

def cmd_selfcheck(args: argparse.Namespace) -> int:
    config = load(args)
    if args.hardware is not None and args.hardware != config.device.device.hardware:
        config = load(args, {"device": {"hardware": args.hardware}}, "--hardware")
    scenario = None
    if config.device.device.hardware == "sim":
        # The simulated recorder starts in the scenario's conditions (battery, storage,
        # clock, GNSS), its configuration overrides included.
        scenario = scenarios.load(args.scenario)
        overrides = {**scenario.config,
                     "device": {**scenario.config.get("device", {}), "hardware": "sim"}}
        config = load(args, overrides, f"{scenario.source} [config]")
        root = args.out or Path(tempfile.mkdtemp(prefix="bodycam-selfcheck-"))
        within = SIM_SELFCHECK_WITHIN_S
    else:
        root = args.root
        within = config.policy.selfcheck.probe_seconds + PI_SELFCHECK_MARGIN_S
    # The self-check alone: no docking, whatever the power says.
    recorder = open_recorder(config, root, scenario=scenario, dock=False)
    try:
        report = first_selfcheck(recorder, within)
    finally:
        recorder.finish()
    if args.json:
        print_json(report.to_json())
    else:
        print(report.summary())
    return EXIT_OK if report.passed else EXIT_PROBLEM


# --- run ---------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    config = load(args)
    root: Path = args.root
    root.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.seconds is not None:
        timer = threading.Timer(args.seconds, stop.set)
        timer.daemon = True
        timer.start()
    supervisor = ServiceNotifier.from_environment()  # under systemd: READY and the watchdog
    # Nothing enrols the recorder here: unenrolled, it refuses (one line, what to run) —
    # and a Pi under systemd then waits, saying so, until it is enrolled (bodycam.unenrolled).
    try:
        recorder = open_recorder(config, root, on_entry=print_entry(sys.stdout))
    except NotEnrolledError as exc:
        if config.device.device.hardware != "pi" or not supervisor.supervised:
            raise
        print(f"bodycam: {exc}", file=sys.stderr, flush=True)
        if not wait_unenrolled(config, root, stop, supervisor):
            supervisor.stopping()
            return EXIT_USAGE
        recorder = open_recorder(config, root, on_entry=print_entry(sys.stdout))
    hands: list[Any] = []  # the control socket and the keyboard, closed at the end
    try:
        if isinstance(recorder, SimRecorder):
            control = Control()
            hands.append(ControlSocket(args.control or root / CONTROL_SOCKET, control))
            if sys.stdin.isatty():
                keyboard = Keyboard(control, stop)
                keyboard.start()
                hands.append(keyboard)
            print(f"recorder {config.device.device.id} running on simulated hardware; "
                  f"control socket {hands[0].path}", flush=True)
            recorder.run(stop, control, supervisor)
        else:
            recorder.run(stop, supervisor)
    except KeyboardInterrupt:
        pass
    finally:
        for hand in reversed(hands):
            hand.close()
        recorder.finish()
        supervisor.close()
    return EXIT_OK


def wait_unenrolled(config: Any, root: Path, stop: threading.Event,
                    supervisor: ServiceNotifier) -> bool:
    """An unenrolled Pi under systemd: its LEDs and speaker say so until it is enrolled."""
    from bodycam.unenrolled import wait_for_enrolment
    from bodycam.wiring import pi_settings
    from device.backends.gpio import GpioIndicators
    from device.backends.sounddevice_audio import SoundDeviceSpeaker
    from firmware_py.fieldwork.speech import PhraseRenderer
    from firmware_py.paths import DeviceLayout

    settings = pi_settings(config.device)
    indicators = GpioIndicators({o: p for o, p in settings.indicator_pins.items() if p >= 0})
    speaker = SoundDeviceSpeaker(device=settings.audio_output, latency=settings.output_latency_s)
    layout = DeviceLayout.from_config(root, config.device)
    renderer = PhraseRenderer(layout.speech_cache, config.device.audio.sample_rate)
    try:
        return wait_for_enrolment(layout.root, config.device.device.id, stop,
                                  indicators=indicators, speaker=speaker, renderer=renderer,
                                  supervisor=supervisor)
    finally:
        speaker.close()
        indicators.close()


# --- install -----------------------------------------------------------------------------

def cmd_install(args: argparse.Namespace) -> int:
    from bodycam.install import install

    if not args.dry_run and args.root.resolve() == Path("/") and os.geteuid() != 0:
        print("bodycam: install changes the system: run it as root (or --dry-run, or "
              "--root PREFIX)", file=sys.stderr)
        return EXIT_USAGE
    try:
        install(args.root, args.dry_run)
    except subprocess.CalledProcessError as exc:
        print(f"bodycam: install stopped: {' '.join(map(str, exc.cmd))} exited with "
              f"{exc.returncode}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


# --- control -----------------------------------------------------------------------------

def cmd_control(args: argparse.Namespace) -> int:
    path = args.target / CONTROL_SOCKET if args.target.is_dir() else args.target
    deadline = time.monotonic() + args.timeout
    while not path.exists():  # a recorder just started opens its socket after booting
        if time.monotonic() > deadline:
            print(f"bodycam: {path}: no control socket (is `bodycam run` running there?)",
                  file=sys.stderr)
            return EXIT_PROBLEM
        time.sleep(0.1)
    answers = control.send(path, list(args.commands))
    for answer in answers:
        print(answer)
    refused = any(a.startswith("error") for a in answers)
    if args.wait:
        while True:
            status = json.loads(control.send(path, ["status"])[0])
            if control.reached(status, args.wait):
                print(json.dumps(status, ensure_ascii=False))
                break
            if time.monotonic() > deadline:
                print(f"bodycam: {args.wait!r} not reached within {args.timeout:g} s: "
                      f"{json.dumps(status)}", file=sys.stderr)
                return EXIT_PROBLEM
            time.sleep(0.2)
    return EXIT_PROBLEM if refused else EXIT_OK


# --- log ---------------------------------------------------------------------------------

def _audit_path(path: Path) -> Path:
    for candidate in (path, path / AUDIT_LOG, path / "device" / AUDIT_LOG):
        if candidate.is_file():
            return candidate
    raise ConfigError(str(path), "", f"no audit log here (looked for {AUDIT_LOG} and "
                      f"device/{AUDIT_LOG})")


def cmd_log(args: argparse.Namespace) -> int:
    path = _audit_path(args.path)
    entries, problem = audit.scan(path)
    checkpoints = sum(e.get("kind") == "checkpoint" for e in entries)
    signed = None
    if args.trust is not None and problem is None:
        signed, problem = audit.verify_checkpoints(entries, load_registry(args.trust))
    if args.verify:
        result = {"path": str(path), "entries": len(entries), "intact": problem is None,
                  "problem": problem, "checkpoints": checkpoints, "checkpoints_verified": signed}
        if args.json:
            print(json.dumps(result, indent=2))
        elif problem is None:
            signatures = (f"{signed} signed checkpoints verified" if signed is not None
                          else f"{checkpoints} signed checkpoints (give --trust to check them)")
            print(f"audit log intact: {len(entries)} entries, chain from genesis to the last "
                  f"entry unbroken, {signatures} ({path})")
        else:
            print(f"AUDIT LOG BROKEN: {problem}")
        return EXIT_OK if problem is None else EXIT_PROBLEM
    if args.json:
        print(json.dumps({"path": str(path), "intact": problem is None, "problem": problem,
                          "entries": entries}, indent=1, ensure_ascii=False))
    else:
        for e in entries:
            facts = " ".join(f"{k}={json.dumps(v, ensure_ascii=False, separators=(',', ':'))}"
                             for k, v in e["fields"].items() if k != "checks")
            print(f"{e['seq']:>6}  {e['time'].get('local', '')[:23]}  {e['kind']:<22} {facts}")
        print("chain intact" if problem is None else f"AUDIT LOG BROKEN: {problem}")
    return EXIT_OK if problem is None else EXIT_PROBLEM


# --- enroll ------------------------------------------------------------------------------

def cmd_enroll(args: argparse.Namespace) -> int:
    try:
        parse_address(args.dock)
    except ValueError as exc:
        print(f"bodycam: --dock {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = enroll_over_network(args.dock, args.code, args.root)
    except KeyFileError as exc:  # EnrolmentRefused, or an answer that does not fit
        print(f"bodycam: enrolment failed: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if args.json:
        print_json(result)
    else:
        print(f"enrolled {result['device']} ({result['unit']}) into {args.root}: device key "
              f"{result['device_key_id']}, agency key {result['agency_key_id']}; run it with "
              f"bodycam run --root {args.root}")
    return EXIT_OK
