"""The requirement table (docs/requirements.md) matches the tests' ``@pytest.mark.req``
markers, and its generator (scripts/requirements.py) reads them as pytest applies them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def generator():
    spec = importlib.util.spec_from_file_location("requirements_table", ROOT / "scripts" / "requirements.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_the_requirement_list_is_the_regulations():
    requirements = generator().load_requirements()
    assert len(requirements) == 43
    assert list(requirements)[0] == "R2.1" and list(requirements)[-1] == "R18.3"
    assert requirements["R13.2"].article == 13
    assert "signed receipt" in requirements["R13.2"].statement


def test_the_requirement_table_in_docs_is_up_to_date():
    # python scripts/update_readme.py rewrites it; this fails when someone forgot to run it.
    assert generator().table_markdown().rstrip() in (ROOT / "docs" / "requirements.md").read_text()
    proc = subprocess.run([sys.executable, "scripts/update_readme.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_generator_sees_a_known_marked_test():
    # tests/test_newcomer.py marks this one @pytest.mark.req("R13.1", "R13.2").
    known = "tests/test_newcomer.py::test_a_new_recorder_records_docks_and_its_evidence_reaches_the_dock"
    assert generator().marked_tests()[known] == ["R13.1", "R13.2"]
    shown = generator().coverage()
    assert known in shown["R13.1"] and known in shown["R13.2"]
    # Two-custodian filing, shown by the station's browser test (issue 17).
    assert "tests/test_station.py::test_two_custodians_file_an_activity" in shown["R13.3"]


def test_every_way_of_marking_is_read(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_a.py").write_text(textwrap.dedent('''
        import pytest
        from pytest import mark

        pytestmark = [pytest.mark.slow, pytest.mark.req("R2.1")]

        @pytest.mark.req("R13.1", "R13.2")
        def test_one():
            pass

        @mark.req("R7.1")
        @pytest.mark.parametrize("x", [1, pytest.param(2, marks=pytest.mark.req("R7.2"))])
        def test_two(x):
            pass

        def test_three():
            pass

        def helper():
            pass

        @pytest.mark.req("R5.1")
        class TestThing:
            pytestmark = pytest.mark.req("R5.2")

            def test_four(self):
                pass
        '''))
    (tests / "not_a_test.py").write_text("import pytest\n@pytest.mark.req('R9.9')\ndef test_x(): pass\n")
    assert generator().marked_tests(tests) == {
        "tests/test_a.py::test_one": ["R2.1", "R13.1", "R13.2"],
        "tests/test_a.py::test_two": ["R2.1", "R7.1"],
        "tests/test_a.py::test_two (some cases)": ["R7.2"],
        "tests/test_a.py::test_three": ["R2.1"],
        "tests/test_a.py::TestThing::test_four": ["R2.1", "R5.1", "R5.2"],
    }


def test_an_unknown_id_is_refused_by_the_generator_and_by_collection(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_typo.py").write_text("import pytest\n\n@pytest.mark.req('R13.9')\ndef test_x():\n    pass\n")
    with pytest.raises(ValueError, match=r"test_typo.py::test_x is marked req\('R13.9'\)"):
        generator().coverage(tests=tests)
    # Collection, with this repository's conftest and markers, fails naming test and id.
    (tests / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "requirements.toml").write_text((ROOT / "docs" / "requirements.toml").read_text())
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "tests/test_typo.py::test_x: req('R13.9') is not a requirement id" in proc.stdout + proc.stderr
