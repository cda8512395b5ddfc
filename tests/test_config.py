"""Configuration: shipped files load; each kind of mistake is one clear line and exit 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_py import config as cfg
from bodycam.cli import main


def write(tmp_path: Path, text: str, name: str = "device.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_files_load_with_documented_defaults():
    config = cfg.load()
    assert config.device.video.width == 640 and config.device.video.fps == 30
    assert config.device.recording.pre_event_seconds == 30
    assert config.device.device.utc_offset_s == 8 * 3600
    assert config.policy.selfcheck.battery_min_percent == 30
    assert config.policy.selfcheck.storage_min_recording_hours == 4
    assert config.policy.selfcheck.clock_max_offset_s == 2


def test_shipped_files_spell_out_every_default():
    # Every single-valued default in the code is written out, with the same value, in the
    # shipped files, so a unit reading config/*.toml sees what is in force.
    for path, root in ((cfg.CONFIG_DIR / "device.toml", cfg.DeviceConfig),
                       (cfg.CONFIG_DIR / "policy.toml", cfg.PolicyConfig)):
        data = cfg.read_toml(path)
        loaded = cfg.build(root, data, str(path))
        for section in dataclasses.fields(root):
            defaults = getattr(root(), section.name)
            for f in dataclasses.fields(defaults):
                value = getattr(defaults, f.name)
                if isinstance(value, (tuple, dict)):
                    assert data[section.name][f.name], f"{section.name}.{f.name} missing"
                    continue
                assert f.name in data.get(section.name, {}), f"{path.name}: {section.name}.{f.name}"
                assert getattr(getattr(loaded, section.name), f.name) == value


@pytest.mark.req("R6.1", "R9.1", "R12.1")
def test_policy_needs_what_the_regulation_needs(tmp_path):
    text = (cfg.CONFIG_DIR / "policy.toml").read_text()
    broken = text.replace('presses = 3\n', 'presses = 2\n')
    with pytest.raises(cfg.ConfigError, match="two reasons share a press count"):
        cfg.load(policy_path=write(tmp_path, broken, "policy.toml"))
    no_matter = text.replace('default_matter = "on_site_enforcement"', 'default_matter = "picnic"')
    with pytest.raises(cfg.ConfigError, match="'picnic' is not one of the matters"):
        cfg.load(policy_path=write(tmp_path, no_matter, "policy.toml"))
    no_code = text.replace("code = 4", "code = 3")
    with pytest.raises(cfg.ConfigError, match="reasons 1-4 once each"):
        cfg.load(policy_path=write(tmp_path, no_code, "policy.toml"))
    silent = write(tmp_path, "[announcement]\nphrases = []\n", "policy.toml")
    with pytest.raises(cfg.ConfigError, match="Art. 9"):
        cfg.load(policy_path=silent)
    no_text = text.replace('text = "This recorder is now recording audio and video. Please mind your words and conduct."', '')
    with pytest.raises(cfg.ConfigError, match=r"announcement.phrases\[1\].text: missing"):
        cfg.load(policy_path=write(tmp_path, no_text, "policy.toml"))


@pytest.mark.parametrize("text, expected", [
    ("[video]\nfps = 300", "video.fps: 300 is out of range: allowed 1 to 60"),
    ("[video]\nfps = 0", "video.fps: 0 is out of range"),
    ("[video]\nfsp = 30", "video.fsp: unknown key (allowed here: width, height, fps"),
    ("[vidoe]\nfps = 30", "vidoe: unknown key (allowed here: device, video"),
    ("[video]\nwidth = \"wide\"", "video.width: 'wide' is not an integer"),
    ("[video]\nwidth = 641", "video.width: 641 must be even"),
    ("[recording]\npre_event_seconds = 121", "recording.pre_event_seconds: 121 is out of range: allowed 0 to 120"),
    ("[recording]\npre_event_audio = 1", "recording.pre_event_audio: 1 is not true or false"),
    ("[device]\nhardware = \"pc\"", "device.hardware: 'pc' is not allowed: use one of 'sim', 'pi'"),
    ("[device]\nid = \"has space\"", "device.id: 'has space' does not match"),
    ("[device]\nutc_offset = \"+8\"", "device.utc_offset: '+8' does not match"),
    ("[buttons]\nphoto_pin = 17", "buttons: two buttons share a pin"),
    ("video = 3", "video: must be a table"),
    ("[video\nfps=1", "not valid TOML"),
])
def test_each_mistake_names_key_value_and_what_is_allowed(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


def test_values_at_the_edges_of_their_range_are_accepted(tmp_path):
    path = write(tmp_path, "[video]\nfps = 60\nbitrate = 100000\n[recording]\npre_event_seconds = 0")
    config = cfg.load(path)
    assert config.device.video.fps == 60 and config.device.recording.pre_event_seconds == 0


def test_integer_accepted_where_a_number_is_expected(tmp_path):
    config = cfg.load(write(tmp_path, "[buttons]\nlong_press_s = 2"))
    assert config.device.buttons.long_press_s == 2.0


def test_policy_errors_name_the_policy_file(tmp_path):
    policy = write(tmp_path, "[selfcheck]\nbattery_min_percent = 130", "policy.toml")
    with pytest.raises(cfg.ConfigError, match="policy.toml: selfcheck.battery_min_percent: 130"):
        cfg.load(policy_path=policy)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(cfg.ConfigError, match="nope.toml: file not found"):
        cfg.load(tmp_path / "nope.toml")


def test_cli_prints_one_line_and_exits_2_before_starting(tmp_path, capsys):
    path = write(tmp_path, "[video]\nfps = 300")
    assert main(["selfcheck", "--config", str(path), "--out", str(tmp_path / "dev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "video.fps: 300 is out of range" in err[0]
    assert not (tmp_path / "dev").exists()  # nothing started


def test_cli_entry_point_exit_code(tmp_path):
    path = write(tmp_path, "[audio]\nsample_rate = 12345")
    proc = subprocess.run([sys.executable, "-m", "bodycam", "selfcheck", "--config",
                           str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "audio.sample_rate: 12345 is not allowed" in proc.stderr


def test_generated_tables_in_the_documents_match_the_code():
    # scripts/update_readme.py rewrites them; this fails when someone forgot to run it.
    docs = cfg.CONFIG_DIR.parent / "docs"
    assert cfg.reference_markdown().rstrip() in (docs / "configuration.md").read_text()
    from firmware_py.agent.signals import table_markdown
    assert table_markdown() in (docs / "how-it-works.md").read_text()


def test_warning_thresholds_are_a_list_or_one_number(tmp_path):
    text = (cfg.CONFIG_DIR / "policy.toml").read_text()
    shipped = "storage_low_minutes = [30.0, 10.0, 3.0]"
    assert shipped in text
    one = cfg.load(policy_path=write(tmp_path, text.replace(shipped, "storage_low_minutes = 12"),
                                     "policy.toml"))
    assert one.policy.warnings.storage_low_minutes == (12.0,)
    unordered = cfg.load(policy_path=write(tmp_path, text.replace(shipped, "storage_low_minutes = [5, 60]"),
                                           "policy.toml"))
    assert unordered.policy.warnings.storage_low_minutes == (60.0, 5.0)  # highest first
    for wrong, expected in (("[30, 7000]", r"storage_low_minutes\[1\]: 7000.0 is out of range"),
                            ("[30, 30]", "names a value twice"),
                            ('["soon"]', r"storage_low_minutes\[0\]: 'soon' is not a number")):
        with pytest.raises(cfg.ConfigError, match=expected):
            cfg.load(policy_path=write(tmp_path, text.replace(shipped, f"storage_low_minutes = {wrong}"),
                                       "policy.toml"))


def test_the_configuration_reference_includes_dock_toml():
    from dock import config as dock_config

    reference = (cfg.CONFIG_DIR.parent / "docs" / "configuration.md").read_text()
    table = dock_config.reference_markdown().rstrip()
    assert "**`config/dock.toml`**" in table and "| `broker.names` |" in table
    assert table in reference
