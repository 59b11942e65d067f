"""environment.yml (conda) must list the same dependencies as pyproject.toml."""

import re
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r): r for r in pip if not r.startswith("-e")}
    assert set(listed) == set(wanted)
    for name, req in wanted.items():
        if name != "torch":  # torch is pinned to the CPU build there, a lower bound here
            assert listed[name].replace(" ", "") == req.replace(" ", ""), name
    assert listed["torch"] == "torch==2.13.0"
    assert "-e .[test]" in pip


def _make_n(*args: str) -> str:
    """What `make` would run (`make -n`), in the checkout, with a virtual environment that does not exist."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_make_installs_the_torch_build_it_is_given_and_holds_the_rest_to_it(tmp_path):
    venv = tmp_path / "venv"
    out = _make_n("venv", f"VENV={venv}", "TORCH_SPEC=torch==9.9.9", "PIP_EXTRA=--index-url https://example.invalid")
    lines = out.splitlines()
    torch_line = next(i for i, line in enumerate(lines) if '"torch==9.9.9"' in line and "pip install" in line)
    assert "--index-url https://example.invalid" in lines[torch_line]
    assert f'echo "torch==9.9.9" > {venv}/constraints.txt' in out
    package_line = next(i for i, line in enumerate(lines) if '-e ".[test]"' in line)
    # the package is installed after torch, with torch pinned to the build just installed
    assert package_line > torch_line and f"PIP_CONSTRAINT={venv}/constraints.txt" in lines[package_line]
    assert "torch==2.13.0" in _make_n("venv", f"VENV={venv}")  # the default build


def test_make_test_runs_ruff_and_the_whole_suite_with_the_small_notebooks(tmp_path):
    # CI runs `make test` (.ci/run): lint, then pytest over tests and notebooks (pyproject's testpaths)
    out = _make_n("test", f"VENV={tmp_path / 'venv'}")
    py = f"{tmp_path / 'venv'}/bin/python"
    assert f"{py} -m ruff check nesf_viz tests benchmarks" in out
    pytest_line = next(line for line in out.splitlines() if f"{py} -m pytest" in line)
    assert pytest_line.startswith("NESF_VIZ_SIZE=small ") and '-m "not slow"' in pytest_line
    assert "--nbval-lax" in pytest_line
    assert not pytest_line.rstrip().endswith(" tests/")  # no path: pyproject's testpaths, notebooks included
    assert "notebooks" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
        "testpaths"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
