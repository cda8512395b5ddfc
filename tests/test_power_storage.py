"""SysfsPower on fake power_supply trees, the simulated battery, and the storage backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device.hardware import HardwareError
from device.power import ChargeStatus
from device.backends.statvfs_storage import StatvfsStorage
from device.backends.sysfs_power import SysfsPower
from simulator.battery import SimBattery, cell_voltage
from simulator.storage import QuotaStorage


def supply(root: Path, name: str, **files: object) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    for key, value in files.items():
        (path / key).write_text(f"{value}\n")
    return path


# --- SysfsPower --------------------------------------------------------------------------

@pytest.fixture
def laptop_like(tmp_path: Path) -> Path:
    supply(tmp_path, "AC", type="Mains", online=0)
    supply(tmp_path, "BAT0", type="Battery", present=1, status="Discharging", capacity=76,
           voltage_now=3_812_000, energy_now=14_060_000, energy_full=18_500_000,
           power_now=2_500_000)
    return tmp_path


def test_reads_energy_family(laptop_like: Path):
    reading = SysfsPower(laptop_like).read()
    assert reading.capacity_percent == 76
    assert reading.status is ChargeStatus.DISCHARGING
    assert reading.voltage_v == pytest.approx(3.812)
    assert reading.energy_wh == pytest.approx(14.06)
    assert reading.energy_full_wh == pytest.approx(18.5)
    assert reading.power_w == pytest.approx(2.5)
    assert reading.external_power is False


def test_files_are_reread_on_every_read(laptop_like: Path):
    power = SysfsPower(laptop_like)
    assert power.read().external_power is False
    supply(laptop_like, "AC", online=1)
    supply(laptop_like, "BAT0", status="Charging", capacity=77)
    reading = power.read()
    assert reading.external_power is True
    assert reading.status is ChargeStatus.CHARGING
    assert reading.capacity_percent == 77


def test_supply_plugged_in_later_is_seen(tmp_path: Path):
    supply(tmp_path, "battery", type="Battery", status="Discharging", capacity=50)
    power = SysfsPower(tmp_path)
    assert power.read().external_power is False
    supply(tmp_path, "usb", type="USB", online=2)  # "online, programmable"
    assert power.read().external_power is True


def test_charge_family_with_derived_capacity(tmp_path: Path):
    supply(tmp_path, "bq27441-0", type="Battery", status="Discharging",
           voltage_now=3_800_000, charge_now=2_500_000, charge_full=5_000_000,
           current_now=-500_000)
    reading = SysfsPower(tmp_path).read()
    assert reading.capacity_percent == pytest.approx(50.0)
    assert reading.energy_wh == pytest.approx(2.5 * 3.8)
    assert reading.energy_full_wh == pytest.approx(5.0 * 3.8)
    assert reading.power_w == pytest.approx(0.5 * 3.8)  # a magnitude, whatever the sign


def test_capacity_derived_from_energy_when_missing(tmp_path: Path):
    supply(tmp_path, "BAT1", type="Battery", status="Full", energy_now=9_000_000,
           energy_full=12_000_000)
    reading = SysfsPower(tmp_path).read()
    assert reading.capacity_percent == pytest.approx(75.0)
    assert reading.voltage_v is None and reading.power_w is None


def test_no_external_supply_listed_falls_back_to_status(tmp_path: Path):
    bat = supply(tmp_path, "BAT0", type="Battery", status="Charging", capacity=40)
    power = SysfsPower(tmp_path)
    assert power.read().external_power is True
    supply(tmp_path, "BAT0", status="Full")
    assert power.read().external_power is True
    (bat / "status").write_text("Discharging\n")
    assert power.read().external_power is False


def test_unknown_status_string_is_unknown(tmp_path: Path):
    supply(tmp_path, "BAT0", type="Battery", status="Exploding", capacity=40)
    assert SysfsPower(tmp_path).read().status is ChargeStatus.UNKNOWN


def test_named_battery_and_empty_slot(tmp_path: Path):
    supply(tmp_path, "BAT0", type="Battery", present=0, capacity=0)
    supply(tmp_path, "BAT1", type="Battery", present=1, capacity=61)
    assert SysfsPower(tmp_path).read().capacity_percent == 61  # the empty slot is skipped
    assert SysfsPower(tmp_path, battery="BAT0").read().capacity_percent == 0
    with pytest.raises(HardwareError, match="BAT9"):
        SysfsPower(tmp_path, battery="BAT9")


def test_garbage_value_names_file_and_value(laptop_like: Path):
    power = SysfsPower(laptop_like)
    (laptop_like / "BAT0" / "voltage_now").write_text("n/a\n")
    with pytest.raises(HardwareError, match=r"BAT0/voltage_now.*'n/a'"):
        power.read()


def test_missing_battery_names_the_root(tmp_path: Path):
    supply(tmp_path, "AC", type="Mains", online=1)
    with pytest.raises(HardwareError, match=str(tmp_path)):
        SysfsPower(tmp_path)
    with pytest.raises(HardwareError, match="nowhere"):
        SysfsPower(tmp_path / "nowhere")


def test_battery_without_any_charge_figure_is_an_error(tmp_path: Path):
    supply(tmp_path, "BAT0", type="Battery", status="Discharging", voltage_now=3_700_000)
    with pytest.raises(HardwareError, match="neither capacity"):
        SysfsPower(tmp_path).read()


# --- SimBattery --------------------------------------------------------------------------

def test_sim_battery_drains_load_times_time(tmp_path: Path):
    battery = SimBattery(tmp_path, capacity_wh=18.5, start_percent=100.0)
    power = SysfsPower(tmp_path)
    battery.update(0.0, 3.7)
    battery.update(3600.0, 3.7)
    assert battery.energy_wh == pytest.approx(18.5 - 3.7)
    reading = power.read()
    assert reading.capacity_percent == 80
    assert reading.energy_wh == pytest.approx(14.8)
    assert reading.energy_full_wh == pytest.approx(18.5)
    assert reading.power_w == pytest.approx(3.7)
    assert reading.voltage_v == pytest.approx(cell_voltage(80.0), abs=1e-6)
    assert reading.status is ChargeStatus.DISCHARGING
    assert reading.external_power is False
    battery.update(5 * 3600.0 - 1.0, 3.7)
    assert not battery.dead
    assert battery.energy_wh == pytest.approx(3.7 / 3600.0)
    assert power.read().capacity_percent == 1  # nearly empty is not 0 %
    battery.update(5 * 3600.0, 3.7)
    assert battery.dead
    assert battery.depleted_at == pytest.approx(5 * 3600.0)
    reading = power.read()
    assert reading.capacity_percent == 0 and reading.energy_wh == 0


def test_sim_battery_death_time_interpolated_within_one_update(tmp_path: Path):
    battery = SimBattery(tmp_path, capacity_wh=18.5, start_percent=100.0)
    battery.update(1000.0, 3.7)
    battery.update(1000.0 + 10 * 3600.0, 3.7)
    assert battery.dead
    assert battery.depleted_at == pytest.approx(1000.0 + 5 * 3600.0)


def test_sim_battery_charges_on_the_dock(tmp_path: Path):
    battery = SimBattery(tmp_path, capacity_wh=18.5, start_percent=50.0, charge_w=10.0)
    power = SysfsPower(tmp_path)
    battery.update(0.0, 2.0)
    battery.dock()
    battery.update(1800.0, 2.0)
    assert battery.energy_wh == pytest.approx(9.25 + 5.0)
    reading = power.read()
    assert reading.status is ChargeStatus.CHARGING
    assert reading.external_power is True
    assert reading.power_w == pytest.approx(10.0)
    battery.update(7200.0, 2.0)
    reading = power.read()
    assert battery.energy_wh == 18.5
    assert reading.status is ChargeStatus.FULL and reading.capacity_percent == 100
    battery.undock()
    battery.update(7200.0 + 36.0, 3.7)
    assert power.read().status is ChargeStatus.DISCHARGING
    assert battery.energy_wh == pytest.approx(18.5 - 3.7 * 0.01)


def test_sim_battery_dead_until_docked(tmp_path: Path):
    battery = SimBattery(tmp_path, start_percent=10.0)
    battery.update(0.0, 1.0)
    battery.drain(10.0)
    assert battery.dead and battery.depleted_at == 0.0
    battery.update(60.0, 1.0)  # still nothing left to draw
    assert battery.energy_wh == 0.0
    battery.dock()
    assert not battery.dead  # the dock powers the device
    battery.update(120.0, 1.0)
    assert battery.energy_wh > 0.0
    battery.undock()
    assert not battery.dead


def test_sim_battery_faults(tmp_path: Path):
    battery = SimBattery(tmp_path, capacity_wh=20.0, start_percent=90.0)
    power = SysfsPower(tmp_path)
    battery.drain(30.0)
    assert power.read().capacity_percent == 60
    battery.set_percent(8.0)
    assert power.read().energy_wh == pytest.approx(1.6)
    with pytest.raises(ValueError):
        battery.set_percent(120.0)
    with pytest.raises(ValueError):
        battery.update(-1.0, -2.0)


def test_sim_battery_writes_only_changed_files(tmp_path: Path):
    battery = SimBattery(tmp_path, start_percent=50.0)
    battery.update(0.0, 2.0)

    def inodes() -> dict[str, int]:
        files = [p for p in (tmp_path / "BAT0").iterdir() if not p.name.startswith(".")]
        files.append(tmp_path / "DOCK" / "online")
        # os.replace gives a rewritten file a new inode.
        return {p.name: p.stat().st_ino for p in files}

    before = inodes()
    battery.update(0.0, 2.0)  # nothing changed
    assert inodes() == before
    battery.update(1.0, 2.0)  # one second at 2 W: only energy and voltage move
    after = inodes()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"energy_now", "voltage_now"}


# --- storage -----------------------------------------------------------------------------

def test_statvfs_storage_matches_statvfs(tmp_path: Path):
    reading = StatvfsStorage(tmp_path).read()
    st = os.statvfs(tmp_path)
    assert reading.path == str(tmp_path)
    assert reading.total_bytes == st.f_blocks * st.f_frsize
    # Other processes write to the same filesystem meanwhile.
    assert abs(reading.free_bytes - st.f_bavail * st.f_frsize) < 64 * 2**20
    assert 0.0 <= reading.used_fraction <= 1.0


def test_statvfs_storage_missing_path(tmp_path: Path):
    storage = StatvfsStorage(tmp_path / "card")
    assert not (tmp_path / "card").exists()  # creates nothing
    with pytest.raises(HardwareError, match="card"):
        storage.read()


def test_quota_storage_counts_files_and_ballast(tmp_path: Path):
    storage = QuotaStorage(tmp_path, quota_bytes=100_000)
    assert storage.total_bytes == 100_000
    assert storage.read().free_bytes == 100_000
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "0001.ts").write_bytes(b"x" * 30_000)
    (tmp_path / "manifest.json").write_bytes(b"y" * 1_000)
    assert storage.read().free_bytes == 69_000
    storage.fill(9_000)
    assert storage.read().free_bytes == 60_000
    storage.fill_to(2_500)
    assert storage.read().free_bytes == 2_500
    (tmp_path / "seg" / "0001.ts").unlink()
    assert storage.read().free_bytes == 32_500
    storage.fill(10**9)
    reading = storage.read()
    assert reading.free_bytes == 0 and reading.used_fraction == 1.0
    storage.clear_fill()
    assert storage.read().free_bytes == 99_000


def test_quota_storage_missing_path(tmp_path: Path):
    with pytest.raises(HardwareError, match="gone"):
        QuotaStorage(tmp_path / "gone", 1000).read()
