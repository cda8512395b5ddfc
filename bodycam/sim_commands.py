"""``bodycam simulate`` and ``bodycam soak``: scripted shifts on the simulated recorder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bodycam import simulation
from bodycam.options import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, add_config_args, load
from firmware_py.evidence.keys import load_agency_private, load_registry
from firmware_py.evidence.verify import summary_lines, verify
from simulator.harness import scenario as scenarios
from simulator.harness import soak
from simulator.harness.runner import print_entry


def register(sub: Any) -> None:
    p = sub.add_parser("simulate", help="run a scripted shift on simulated hardware",
                       description="Run a scenario (a TOML file, or the name of a shipped "
                       "one) on the simulated recorder in virtual time; print the timeline "
                       "and write everything under --out.")
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file or shipped name "
                   f"({', '.join(scenarios.shipped())})")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="directory for the device's files, audit log and the run's report")
    add_config_args(p)
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
    p.add_argument("--continuous", type=float, default=0.0, metavar="MINUTES",
                   help="open the shift with one unbroken recording this long (default: none; "
                        "480 films a whole shift, about 3,800 files to dock)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="directory for the device, the dock and the archive")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="print the soak report as JSON")
    p.set_defaults(func=cmd_soak)


def cmd_simulate(args: argparse.Namespace) -> int:
    scenario = scenarios.load(args.scenario)
    config = load(args, scenario.config, f"{scenario.source} [config]")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    on_entry = None if args.json else print_entry(sys.stdout)
    if not args.json:
        print(f"scenario {scenario.name}: {scenario.description}".rstrip(": "))
        print(f"device {config.device.device.id}, {config.device.video.width}x"
              f"{config.device.video.height}@{config.device.video.fps}, "
              f"{scenario.duration_s:g} s simulated, files under {out}")
    # A scenario with power cuts runs the device in a process of its own, killed at each
    # cut (simulator.harness.powercut).
    result, _ = simulation.run_docked(scenario, out, config, on_entry)
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
    if args.visits < 2 or args.recordings < 1:
        print("bodycam: a soak needs at least 2 visits (it docks twice) and 1 recording each",
              file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.continuous <= 24 * 60:
        print(f"bodycam: --continuous must be 0 to 1440 minutes, not {args.continuous:g}",
              file=sys.stderr)
        return EXIT_USAGE
    scenario, plan = soak.scenario(args.seed, visits=args.visits,
                                   recordings_per_visit=args.recordings,
                                   dock_after=(args.visits // 2 - 1, args.visits - 1),
                                   continuous_s=args.continuous * 60)
    config = load(args, scenario.config, f"{scenario.source} [config]")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    result, sessions = simulation.run_docked(scenario, out, config,
                                             None if args.json else print_entry(sys.stdout))
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
        "dock_sessions": sessions, "left_on_device": left,
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
