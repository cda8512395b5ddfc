"""``bodycam install``: the recorder set up as a service on Raspberry Pi OS.

What it does, in order, each step said as it is done (or, with ``--dry-run``, as it would
be): the extra packages from apt (picamera2 and libcamera's bindings, PortAudio, lgpio,
espeak-ng, gpsd); a system user ``bodycam`` in the groups of the camera, sound, GPIO, I²C
and the serial port; the device root ``/var/lib/bodycam`` and ``/etc/bodycam``; the shipped
``device.toml`` (with ``hardware = "pi"``) and ``policy.toml`` in ``/etc/bodycam`` — an
existing file is kept, never overwritten; the systemd unit (``config/bodycam.service``,
its ``ExecStart`` the ``bodycam`` program of this installation) in
``/etc/systemd/system``; a udev rule that lets the ``bodycam`` group open the RTC (the
unit grants CAP_SYS_TIME to set it: ``docs/rtc.md``); and ``systemctl enable``. It does not enrol the recorder: that is
the dock's job (``bodycam dock enroll`` or ``bodycam enroll --code``), and an unenrolled
recorder says so at start.

``--root PREFIX`` writes the files under PREFIX instead of ``/`` (an image being prepared,
or a test); the steps that change the running system — apt, the user, ``chown``,
``systemctl`` — are then only listed, as they cannot be run into a prefix.
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from firmware_py.config import CONFIG_DIR

USER = "bodycam"
GROUPS = ("video", "audio", "gpio", "i2c", "dialout")
PACKAGES = ("python3-picamera2", "python3-libcamera", "libportaudio2", "python3-lgpio",
            "espeak-ng", "gpsd")
DEVICE_ROOT = Path("/var/lib/bodycam")
CONFIG = Path("/etc/bodycam")
UNIT = Path("/etc/systemd/system/bodycam.service")
UNIT_TEMPLATE = CONFIG_DIR / "bodycam.service"
# The kernel's RTC device is root's alone (mode 0600); the agent opens it read-only to set
# it with RTC_SET_TIME (its unit grants CAP_SYS_TIME; docs/rtc.md).
RTC_RULE = Path("/etc/udev/rules.d/60-bodycam-rtc.rules")
RTC_RULE_TEXT = ('# bodycam install: the recorder may open the RTC to set it after a trusted '
                 'correction (docs/rtc.md)\n'
                 f'SUBSYSTEM=="rtc", KERNEL=="rtc[0-9]*", GROUP="{USER}", MODE="0640"\n')


@dataclass(frozen=True)
class Step:
    """One thing the installation does; ``run`` is None where it only reports."""

    says: str
    run: Callable[[], None] | None = None
    system: bool = False  # changes the running system (apt, users, systemctl)


def bodycam_program() -> Path:
    """The ``bodycam`` program of this installation (beside this Python)."""
    beside = Path(sys.executable).parent / "bodycam"
    found = beside if beside.exists() else shutil.which("bodycam")
    if found is None:
        raise FileNotFoundError("no bodycam program beside this Python or on PATH")
    return Path(found).absolute()


def render_unit(program: Path) -> str:
    return UNIT_TEMPLATE.read_text(encoding="utf-8").replace("@BODYCAM@", str(program))


def pi_device_toml() -> str:
    """The shipped device.toml, for the Pi's own parts."""
    text = (CONFIG_DIR / "device.toml").read_text(encoding="utf-8")
    shipped = 'hardware = "sim"'
    if shipped not in text:
        raise ValueError(f"{CONFIG_DIR / 'device.toml'} has no line {shipped!r} to set to pi")
    return text.replace(shipped, 'hardware = "pi"', 1)


def plan(root: Path, program: Path) -> list[Step]:
    """The steps, for files under ``root`` (``/`` on the recorder itself)."""
    def under(path: Path) -> Path:
        return root / path.relative_to("/")

    def run(*argv: str) -> Callable[[], None]:
        return lambda: subprocess.run(argv, check=True)

    existing = [g for g in GROUPS if _group_exists(g)]
    steps = [
        Step(f"install packages: apt-get install -y {' '.join(PACKAGES)}",
             run("apt-get", "install", "-y", "--no-install-recommends", *PACKAGES), system=True),
        Step(f"create system user {USER} in groups {','.join(GROUPS)}"
             + (f" (missing here: {','.join(sorted(set(GROUPS) - set(existing)))})"
                if len(existing) < len(GROUPS) else ""),
             _create_user(existing), system=True),
    ]
    for path, mode in ((DEVICE_ROOT, 0o750), (CONFIG, 0o755)):
        target = under(path)
        steps.append(Step(f"create {target} (mode {mode:o})",
                          lambda t=target, m=mode: _mkdir(t, m)))
    steps.append(Step(f"give {DEVICE_ROOT} to {USER}",
                      run("chown", "-R", f"{USER}:{USER}", str(DEVICE_ROOT)), system=True))
    for name, text in (("device.toml", pi_device_toml),
                       ("policy.toml", lambda: (CONFIG_DIR / "policy.toml").read_text("utf-8"))):
        target = under(CONFIG / name)
        if target.exists():
            steps.append(Step(f"keep {target} (already there)"))
        else:
            steps.append(Step(f"write {target}", lambda t=target, f=text: _write(t, f(), 0o644)))
    rule = under(RTC_RULE)
    steps.append(Step(f"write {rule} (group {USER} may open the RTC to set it)",
                      lambda: _write(rule, RTC_RULE_TEXT, 0o644)))
    steps.append(Step("apply it: udevadm trigger --subsystem-match=rtc",
                      run("udevadm", "trigger", "--subsystem-match=rtc"), system=True))
    unit = under(UNIT)
    steps.append(Step(f"write {unit} (ExecStart {program} run)",
                      lambda: _write(unit, render_unit(program), 0o644)))
    steps.append(Step("enable the service: systemctl daemon-reload && systemctl enable "
                      "bodycam.service",
                      lambda: (run("systemctl", "daemon-reload")(),
                               run("systemctl", "enable", "bodycam.service")()), system=True))
    return steps


def install(root: Path, dry_run: bool, say: Callable[[str], None] = print,
            program: Path | None = None) -> list[Step]:
    """Carry out (or with ``dry_run`` only say) the installation into ``root``."""
    program = program or bodycam_program()
    on_system = root.resolve() == Path("/")
    steps = plan(root, program)
    for step in steps:
        if dry_run:
            say(f"would {step.says}")
        elif step.system and not on_system:
            say(f"not into {root}: {step.says} (run on the recorder itself)")
        else:
            if step.run is not None:
                step.run()
            say(("done: " if step.run is not None else "") + step.says)
    if not dry_run:
        say("next: enrol this recorder at its dock (bodycam dock enroll, or bodycam enroll "
            f"--code ... --root {DEVICE_ROOT}), then: systemctl start bodycam")
    return steps


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _create_user(groups: list[str]) -> Callable[[], None]:
    def create() -> None:
        args = ["useradd", "--system", "--home-dir", str(DEVICE_ROOT), "--no-create-home",
                "--shell", "/usr/sbin/nologin", "--user-group"]
        if groups:
            args += ["--groups", ",".join(groups)]
        if subprocess.run(["id", "-u", USER], capture_output=True).returncode == 0:
            if groups:  # the user is there: make sure of its groups
                subprocess.run(["usermod", "--append", "--groups", ",".join(groups), USER],
                               check=True)
            return
        subprocess.run([*args, USER], check=True)
    return create


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)
