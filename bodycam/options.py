"""What every command shares: exit codes, the configuration options, JSON output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from firmware_py.config import Config, load as load_config

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_HARDWARE = 0, 1, 2, 3


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="device configuration (default: config/device.toml)")
    p.add_argument("--policy", type=Path, metavar="FILE",
                   help="policy configuration (default: config/policy.toml)")


def load(args: argparse.Namespace, overrides: dict[str, Any] | None = None,
         source: str = "overrides") -> Config:
    return load_config(args.config, args.policy, overrides, source)


def print_json(value: Any, indent: int = 2) -> None:
    print(json.dumps(value, indent=indent, ensure_ascii=False))
