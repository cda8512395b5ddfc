"""The ``bodycam`` command line: one program, a subcommand per job.

Exit codes: 0 success; 1 the job ran and found a problem (a failed self-check, a part that
could not be opened); 2 the command could not start (bad configuration, bad scenario, bad
arguments) — with one line on stderr naming what is wrong.

This module is the only place the firmware is wired to the simulator.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from device.hardware import HardwareError
from firmware_py.config import Config, ConfigError, load as load_config

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("bodycam")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="device configuration (default: config/device.toml)")
    p.add_argument("--policy", type=Path, metavar="FILE",
                   help="policy configuration (default: config/policy.toml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bodycam",
        description="Body-worn evidence recorder: agent, simulator and tools.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("selfcheck", help="run the pre-use self-check (Art. 7) and report",
                       description="Run the pre-use self-check: battery, storage, clock, "
                       "camera, microphone, GNSS. Exit 0 when every check passes (warnings "
                       "pass), 1 when any fails. A failed check never blocks recording.")
    _add_config_args(p)
    p.add_argument("--hardware", choices=("sim", "pi"),
                   help="override the configured hardware backends")
    p.add_argument("--scenario", default="patrol", metavar="SCENARIO",
                   help="with sim hardware: scenario whose conditions (battery, storage, "
                   "clock, GNSS) the device starts in (default: patrol)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="with sim hardware: where the simulated device keeps its files "
                   "(default: a temporary directory)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_selfcheck)

    p = sub.add_parser("simulate", help="run a scripted shift on simulated hardware",
                       description="Run a scenario (a TOML file, or the name of a shipped "
                       "one) on the simulated recorder in virtual time; print the timeline "
                       "and write everything under --out.")
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file or shipped name "
                   "(patrol, cold-start, faults)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="directory for the device's files, audit log and the run's report")
    _add_config_args(p)
    p.add_argument("--json", action="store_true",
                   help="print the result (self-checks, timeline, counts) as JSON")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("soak", help="an eight-hour shift with random faults, verified",
                       description="Generate a soak shift from a seed (visits, recordings, "
                       "interruptions, random faults and power cuts, two dockings), run it on "
                       "the simulated recorder in virtual time with docking over the embedded "
                       "broker, then verify the dock's archive: exit 0 when every seal is "
                       "valid, every gap in the footage is explained by a sealed interruption "
                       "and nothing is left on the device.")
    p.add_argument("--seed", type=int, default=2026, help="the shift to generate (default 2026)")
    p.add_argument("--visits", type=int, default=10, help="visits in the shift (default 10)")
    p.add_argument("--recordings", type=int, default=4, metavar="N",
                   help="recordings per visit (default 4)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="directory for the device, the dock and the archive")
    _add_config_args(p)
    p.add_argument("--json", action="store_true", help="print the soak report as JSON")
    p.set_defaults(func=cmd_soak)

    p = sub.add_parser("run", help="run the agent on the configured hardware",
                       description="Run the recorder agent until interrupted. With "
                       "hardware = \"sim\" the simulated recorder runs in real time.")
    _add_config_args(p)
    p.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                   help="working directory of the device (evidence and audit log under it)")
    p.add_argument("--seconds", type=float, metavar="S",
                   help="stop after this many seconds (default: until interrupted)")
    p.set_defaults(func=cmd_run)

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

    p = sub.add_parser("enroll", help="enrol a device with the agency (keys, id, unit)",
                       description="Enrol a device (R18.3): create its Ed25519 signing key on "
                       "the device (if it has none), register the public key with the agency "
                       "in the dock directory (creating the agency's X25519 key pair there if "
                       "it has none), and give the device the agency's public key, its id and "
                       "its unit.")
    p.add_argument("--device-root", type=Path, required=True, metavar="DIR",
                   help="the device's directory (keys/ and enrollment.json go here)")
    p.add_argument("--dock", type=Path, required=True, metavar="DIR",
                   help="the dock directory (agency keys and the devices/ registry)")
    p.add_argument("--device-id", metavar="ID", help="default: from --config")
    p.add_argument("--unit", metavar="UNIT", help="default: from --config")
    _add_config_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_enroll)

    dock = sub.add_parser("dock", help="the docking station: sync service, enrolment, ledger",
                          description="Run the dock service (default), or manage devices.")
    dock.add_argument("--config", type=Path, metavar="FILE",
                      help="dock configuration (default: config/dock.toml)")
    dock.set_defaults(func=cmd_dock_serve, seconds=None, json=False)
    dock_sub = dock.add_subparsers(dest="dock_command", metavar="ACTION")
    d = dock_sub.add_parser("serve", help="run the sync service until interrupted")
    d.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    d.set_defaults(func=cmd_dock_serve)
    d = dock_sub.add_parser("enroll", help="enrol a device: keys, client certificate, receipts key")
    d.add_argument("--device-root", type=Path, required=True, metavar="DIR")
    d.add_argument("--device-id", required=True, metavar="ID")
    d.add_argument("--unit", required=True, metavar="UNIT")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dock_enroll)
    d = dock_sub.add_parser("assign", help="check a device out to an officer (R4.1)")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("officer", metavar="OFFICER")
    d.set_defaults(func=cmd_dock_assign)
    d = dock_sub.add_parser("release", help="check a device back in (R4.1)")
    d.add_argument("device", metavar="DEVICE")
    d.set_defaults(func=cmd_dock_release)
    d = dock_sub.add_parser("ledger", help="who had which device, when, what was recorded (R4.2)")
    d.add_argument("--csv", action="store_true", help="CSV for export (R4.3)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dock_ledger)
    d = dock_sub.add_parser("overdue", help="evidence not stored in time, devices not docked (R13.4)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dock_overdue)

    p = sub.add_parser("verify", help="check sealed evidence: signatures, hashes, chain",
                       description="Verify sealed evidence. Without --key, checks signatures, "
                       "stored-byte hashes and the chain on the ciphertext; with the agency key "
                       "also decrypts every chunk and checks the plaintext hashes. Reports per "
                       "item: valid, altered (which check), missing (gaps in the sequence), "
                       "out_of_order, unknown_device. Exit 0 only when all is valid.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="evidence directories, manifests or files")
    p.add_argument("--trust", type=Path, required=True, metavar="DIR",
                   help="enrolled devices: a dock directory or its devices/ folder")
    p.add_argument("--key", type=Path, metavar="AGENCY_KEY",
                   help="the agency's X25519 private key (PEM), or a dock directory holding it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="write verified plaintext evidence and a report",
                       description="Verify with the agency key, then write the plaintext media "
                       "(MPEG-TS), photos, metadata, manifests and a verification report under "
                       "--out. Refuses, writing nothing, if anything fails verification.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--trust", type=Path, required=True, metavar="DIR",
                   help="enrolled devices: a dock directory or its devices/ folder")
    p.add_argument("--key", type=Path, required=True, metavar="AGENCY_KEY")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"bodycam: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _scenario_error() as exc:
        print(f"bodycam: scenario error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HardwareError as exc:
        print(f"bodycam: hardware error: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except _key_error() as exc:
        print(f"bodycam: key error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _key_error() -> type[Exception]:
    from firmware_py.evidence.keys import KeyFileError
    return KeyFileError


def _scenario_error() -> type[Exception]:
    from simulator.scenario import ScenarioError
    return ScenarioError


def _load(args: argparse.Namespace, overrides: dict[str, Any] | None = None,
          source: str = "overrides") -> Config:
    return load_config(args.config, args.policy, overrides, source)


# --- selfcheck ---------------------------------------------------------------------------

def cmd_selfcheck(args: argparse.Namespace) -> int:
    config = _load(args)
    hardware_kind = args.hardware or config.device.device.hardware
    if hardware_kind == "sim":
        report = _selfcheck_sim(args, config)
    else:
        report = _selfcheck_pi(config)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(report.summary())
    return EXIT_OK if report.passed else EXIT_PROBLEM


def _selfcheck_sim(args: argparse.Namespace, config: Config):
    import tempfile

    from simulator import scenario as scenarios
    from simulator.runner import Simulation

    scenario = scenarios.load(args.scenario)
    config = _load(args, scenario.config, f"{scenario.source} [config]")
    out = args.out or Path(tempfile.mkdtemp(prefix="bodycam-selfcheck-"))
    sim = Simulation(scenario, out, config)
    sim.start()
    try:
        while not sim.agent.reports and sim.world.clock.now < 60.0:
            if not sim.advance_to(sim.world.clock.now + 0.1):
                break
        if not sim.agent.reports:
            raise HardwareError("self-check did not finish within 60 s of simulated time")
        return sim.agent.reports[0]
    finally:
        sim.finish()


def _selfcheck_pi(config: Config):
    from firmware_py.agent.assembly import assemble as Agent
    from firmware_py.evidence.audit import AuditLog
    from firmware_py.pi import build_pi_hardware

    evidence = Path(config.device.device.evidence_dir)
    evidence.mkdir(parents=True, exist_ok=True)
    hardware = build_pi_hardware(config.device, evidence)
    audit = AuditLog(evidence.parent / "audit.jsonl", hardware.clock)
    agent = Agent(config, hardware, audit)
    try:
        agent.start()
        deadline = time.monotonic() + config.policy.selfcheck.probe_seconds + 5.0
        while not agent.reports and time.monotonic() < deadline:
            agent.step()
            time.sleep(0.01)
        if not agent.reports:
            raise HardwareError("self-check did not finish")
        return agent.reports[0]
    finally:
        agent.close()
        audit.close()
        hardware.close()


# --- simulate ----------------------------------------------------------------------------

def cmd_simulate(args: argparse.Namespace) -> int:
    from simulator import scenario as scenarios
    from simulator.runner import print_entry, run_scenario

    scenario = scenarios.load(args.scenario)
    config = _load(args, scenario.config, f"{scenario.source} [config]")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    on_entry = None if args.json else print_entry(sys.stdout)
    if not args.json:
        print(f"scenario {scenario.name}: {scenario.description}".rstrip(": "))
        print(f"device {config.device.device.id}, {config.device.video.width}x"
              f"{config.device.video.height}@{config.device.video.fps}, "
              f"{scenario.duration_s:g} s simulated, files under {out}")
    from sync.simdock import SimulatedDock

    dock = SimulatedDock(out / "archive")
    try:
        # run_scenario: a scenario with power cuts runs the device in a process of its own,
        # killed at each cut (simulator.powercut).
        result = run_scenario(scenario, out, config, on_entry, on_dock=dock)
    finally:
        dock.close()
    summary = result.to_json()
    (out / "simulation.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    (out / "timeline.txt").write_text("\n".join(e.line() for e in result.timeline) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        segments = sum(r.get("segments", 0) for r in result.recordings)
        print(f"done: {result.simulated_seconds:.0f} s simulated in {result.wall_seconds:.1f} s "
              f"({result.speed:.1f}x real time), {result.frames} frames captured, "
              f"{len(result.recordings)} recordings in {segments} segment files under "
              f"{out / 'device' / 'evidence'}, final state {result.final_state}")
        for report in result.reports[:1]:
            print(report.summary())
    return EXIT_OK


def cmd_soak(args: argparse.Namespace) -> int:
    from firmware_py.evidence.keys import load_agency_private, load_registry
    from firmware_py.evidence.verify import summary_lines, verify
    from simulator import soak
    from simulator.runner import print_entry, run_scenario
    from sync.simdock import SimulatedDock

    if args.visits < 2 or args.recordings < 1:
        print("bodycam: a soak needs at least 2 visits (it docks twice) and 1 recording each",
              file=sys.stderr)
        return EXIT_USAGE
    scenario, plan = soak.scenario(args.seed, visits=args.visits,
                                   recordings_per_visit=args.recordings,
                                   dock_after=(args.visits // 2 - 1, args.visits - 1))
    config = _load(args, scenario.config, f"{scenario.source} [config]")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    dock = SimulatedDock(out / "archive")
    try:
        result = run_scenario(scenario, out, config,
                              None if args.json else print_entry(sys.stdout), on_dock=dock)
    finally:
        dock.close()
    (out / "timeline.txt").write_text("\n".join(e.line() for e in result.timeline) + "\n")
    dock_dir = out / "dock"
    report = verify([out / "archive"], load_registry(dock_dir), load_agency_private(dock_dir))
    left = sorted(str(p.relative_to(out)) for p in (out / "device" / "evidence").rglob("*")
                  if p.is_file() and not p.name.startswith("."))
    kinds: dict[str, int] = {}
    for entry in result.timeline:
        if entry.source == "agent":
            kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
    summary = {
        "seed": args.seed, "ok": report.ok and not left,
        "simulated_seconds": round(result.simulated_seconds), "wall_seconds": round(result.wall_seconds, 1),
        "plan": {"visits": plan.visits, "recordings": plan.recordings, "dockings": plan.dockings,
                 "faults": plan.faults, "power_cuts": plan.power_cuts},
        "recordings_started": kinds.get("recording_started", 0),
        "interruptions": kinds.get("interruption", 0), "power_cuts": kinds.get("power_cut", 0),
        "dock_sessions": dock.sessions, "left_on_device": left,
        "verify": {"ok": report.ok, "items": len(report.items),
                   "counts": report.to_json()["counts"], "missing": report.missing,
                   "gaps": len(report.gaps),
                   "unexplained_gaps": sum(not g.explained for g in report.gaps)},
        "gaps": [g.to_json() for g in report.gaps],
    }
    (out / "soak.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(f"soak {args.seed}: {summary['simulated_seconds']} s simulated in "
              f"{summary['wall_seconds']} s; {summary['recordings_started']} recordings, "
              f"{summary['interruptions']} interruptions, {summary['power_cuts']} power cuts, "
              f"faults {plan.faults}")
        for line in summary_lines(report):
            if not line.startswith("VALID"):
                print(line)
        if left:
            print(f"NOT SYNCED     {len(left)} files left on the device: {', '.join(left[:5])}")
    return EXIT_OK if summary["ok"] else EXIT_PROBLEM


# --- log -------------------------------------------------------------------------------

def _audit_path(path: Path) -> Path:
    for candidate in (path, path / "audit.jsonl", path / "device" / "audit.jsonl"):
        if candidate.is_file():
            return candidate
    raise ConfigError(str(path), "", "no audit log here (looked for audit.jsonl and "
                      "device/audit.jsonl)")


def cmd_log(args: argparse.Namespace) -> int:
    from firmware_py.evidence import audit

    path = _audit_path(args.path)
    entries, problem = audit.scan(path)
    checkpoints = sum(e.get("kind") == "checkpoint" for e in entries)
    signed = None
    if args.trust is not None and problem is None:
        from firmware_py.evidence.keys import load_registry
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


# --- enroll, verify, export --------------------------------------------------------------

def cmd_enroll(args: argparse.Namespace) -> int:
    from firmware_py.evidence.keys import enroll

    config = _load(args)
    result = enroll(args.device_root, args.dock, args.device_id or config.device.device.id,
                    args.unit or config.device.device.unit)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"enrolled {result['device']} ({result['unit']}): device key "
              f"{result['device_key_id']}, agency key {result['agency_key_id']}")
    return EXIT_OK


def _verify_inputs(args: argparse.Namespace):
    from firmware_py.evidence.keys import load_agency_private, load_registry

    registry = load_registry(args.trust)
    key = load_agency_private(args.key) if args.key else None
    return registry, key


def cmd_verify(args: argparse.Namespace) -> int:
    from firmware_py.evidence.verify import summary_lines, verify

    registry, key = _verify_inputs(args)
    report = verify(args.paths, registry, key)
    if args.json:
        print(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    else:
        for line in summary_lines(report):
            print(line)
    return EXIT_OK if report.ok else EXIT_PROBLEM


def cmd_export(args: argparse.Namespace) -> int:
    from firmware_py.evidence.export import ExportRefused, export

    registry, key = _verify_inputs(args)
    try:
        report = export(args.paths, registry, key, args.out)
    except ExportRefused as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps(exc.report.to_json(), indent=1, ensure_ascii=False))
        return EXIT_PROBLEM
    files = sum(len((i.body or {}).get("files", [])) for i in report.items)
    if args.json:
        print(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    else:
        print(f"exported {len(report.items)} sealed items ({files} files), all verified, "
              f"to {args.out}")
    return EXIT_OK


# --- dock --------------------------------------------------------------------------------

def _dock_setup(args: argparse.Namespace):
    from sync import config as dock_config
    from sync.archive import Archive
    from sync.enrollment import dock_key

    config = dock_config.load(args.config)
    dock_dir = Path(config.dock.dir)
    dock_dir.mkdir(parents=True, exist_ok=True)
    archive = Archive(Path(config.dock.archive), dock_dir, dock_key(dock_dir), config.dock.id)
    return config, dock_dir, archive


def cmd_dock_enroll(args: argparse.Namespace) -> int:
    from sync.enrollment import enroll_device

    config, dock_dir, archive = _dock_setup(args)
    archive.close()
    result = enroll_device(args.device_root, dock_dir, args.device_id, args.unit)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"enrolled {result['device']} ({result['unit']}) at {dock_dir}: device key "
              f"{result['device_key_id']}, client certificate {result['mqtt_certificate']}")
    return EXIT_OK


def cmd_dock_assign(args: argparse.Namespace) -> int:
    from sync import ledger

    _, _, archive = _dock_setup(args)
    try:
        ledger.assign(archive, args.device, args.officer)
    except ledger.LedgerError as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        archive.close()
    print(f"{args.device} checked out to {args.officer}")
    return EXIT_OK


def cmd_dock_release(args: argparse.Namespace) -> int:
    from sync import ledger

    _, _, archive = _dock_setup(args)
    try:
        officer = ledger.release(archive, args.device)
    except ledger.LedgerError as exc:
        print(f"bodycam: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        archive.close()
    print(f"{args.device} checked in from {officer}")
    return EXIT_OK


def cmd_dock_ledger(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from sync import ledger

    _, _, archive = _dock_setup(args)
    try:
        if args.csv:
            sys.stdout.write(ledger.csv_text(archive))
        elif args.json:
            print(json.dumps([asdict(r) for r in ledger.rows(archive)], indent=1))
        else:
            for r in ledger.rows(archive):
                print(f"{r.device:<10} {r.officer:<10} out {r.assigned_at}  in {r.released_at or '—':<25} "
                      f"{r.activities} activities, {r.segments} segments, {r.photos} photos, "
                      f"{r.interruptions} interruptions")
    finally:
        archive.close()
    return EXIT_OK


def cmd_dock_overdue(args: argparse.Namespace) -> int:
    config, _, archive = _dock_setup(args)
    try:
        found = archive.overdue(config.deadline.upload_hours, time.time(),
                                config.deadline.dock_every_hours)
    finally:
        archive.close()
    if args.json:
        print(json.dumps(found, indent=1))
    else:
        for a in found["activities"]:
            missing = sum(f["stored_at"] is None for f in a["files"])
            print(f"OVERDUE  {a['device']} activity {a['activity']}: {len(a['files'])} files not "
                  f"stored within {config.deadline.upload_hours:g} h of return ({missing} still missing)")
        for d in found["devices"]:
            print(f"NOT DOCKED  {d['device']} for more than {config.deadline.dock_every_hours:g} h")
        if not found["activities"] and not found["devices"]:
            print("nothing overdue")
    return EXIT_PROBLEM if found["activities"] or found["devices"] else EXIT_OK


def _progress_printer(every_s: float = 1.0):
    """A custodian's view of the dock: per device at most a line a second while files come
    in (the dock reports after every chunk), and always the line that completes a device."""
    last: dict[str, float] = {}
    finished: dict[str, float] = {}  # device → the session (its start) already reported done

    def show(progress) -> None:
        now = time.monotonic()
        done = progress.files > 0 and progress.session_receipts >= progress.files
        if done and finished.get(progress.device) == progress.started:
            return
        if done or now - last.get(progress.device, -every_s) >= every_s:
            last[progress.device] = now
            if done:
                finished[progress.device] = progress.started
            print(progress.line(), flush=True)

    return show


def cmd_dock_serve(args: argparse.Namespace) -> int:
    from sync.broker import EmbeddedBroker, MosquittoBroker
    from sync.dock import DockService
    from sync.enrollment import dock_ca, dock_client

    config, dock_dir, archive = _dock_setup(args)
    archive.close()
    broker = None
    tls = None
    if config.broker.mode == "embedded":
        broker = EmbeddedBroker(config.broker.host, config.broker.port)
        broker.start()
        host, port = config.broker.host, broker.port
    else:
        cert = dock_client(dock_dir)
        if config.broker.mode == "mosquitto":
            broker = MosquittoBroker(dock_ca(dock_dir), dock_dir / "broker", port=config.broker.port)
            broker.start()
            host, port, ca = broker.host, broker.port, broker.ca_file
        else:
            host, port, ca = config.broker.host, config.broker.port, dock_ca(dock_dir).cert_path
        tls = (ca, cert.cert, cert.key)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = DockService(dock_dir, Path(config.dock.archive), host, port, tls=tls,
                          dock_id=config.dock.id, on_progress=_progress_printer())
    service.start()
    print(f"dock {config.dock.id} listening through {config.broker.mode} broker at {host}:{port}; "
          f"archive {config.dock.archive}", flush=True)
    try:
        stop.wait(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
        if broker is not None:
            broker.stop()
    return EXIT_OK


# --- run ---------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from firmware_py.agent.assembly import assemble as Agent
    from firmware_py.evidence.audit import AuditLog

    config = _load(args)
    root: Path = args.root
    root.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.seconds is not None:
        threading.Timer(args.seconds, stop.set).start()
    if config.device.device.hardware == "pi":
        from firmware_py.pi import build_pi_hardware
        evidence = Path(config.device.device.evidence_dir)
        evidence = evidence if evidence.is_absolute() else root / evidence
        evidence.mkdir(parents=True, exist_ok=True)
        hardware = build_pi_hardware(config.device, evidence)
        audit = AuditLog(root / "audit.jsonl", hardware.clock)
        agent = Agent(config, hardware, audit)
        try:
            agent.run(stop)
        except KeyboardInterrupt:
            pass
        finally:
            agent.close()
            audit.close()
            hardware.close()
        return EXIT_OK
    return _run_sim_realtime(config, root, stop)


def _run_sim_realtime(config: Config, root: Path, stop: threading.Event) -> int:
    """The simulated recorder paced to the wall clock, for trying the agent by hand."""
    from datetime import datetime, timezone

    from simulator.runner import Simulation, print_entry
    from simulator.scenario import Scenario

    scenario = Scenario("run", "interactive", datetime.now(timezone.utc).timestamp(), 48 * 3600)
    sim = Simulation(scenario, root, config, print_entry(sys.stdout))
    started = time.monotonic()
    sim.start()
    try:
        while not stop.is_set():
            if not sim.advance_to(time.monotonic() - started):
                break
            stop.wait(1.0 / config.device.video.fps)
    except KeyboardInterrupt:
        pass
    finally:
        sim.finish()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
