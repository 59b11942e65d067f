"""environment.yml (conda) must list the same dependencies as pyproject.toml."""

import re
from pathlib import Path

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


def test_makefile_torch_spec_is_one_overridable_variable():
    mk = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_SPEC \?= torch==2\.13\.0$", mk, re.M)
    assert "PIP_CONSTRAINT" in mk
