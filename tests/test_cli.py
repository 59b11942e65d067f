"""The `nesf-viz` command line: runs end to end and reports bad input without a traceback."""

import subprocess
import sys

import pytest
import torch

from nesf_viz.cli import main


def test_train_then_resume_on_embedded_data(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--train", "synthetic:60", "--val", "synthetic:60", "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--limit", "16", "--device", "cpu"]
    assert main(args) == 0
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    args[args.index("--epochs") + 1] = "2"
    assert main(args + ["--resume"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    assert "2 epochs logged" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--train", "nope.csv", "--val", "synthetic", "--out", "x"], "no CSV file at nope.csv"),
        (["train", "--train", "synthetic", "--val", "synthetic:2", "--out", "x"], "n_total must be an integer >= 3"),
        (["evaluate", "--data", "synthetic", "--checkpoint", "missing.pt"], "no checkpoint at"),
    ],
)
def test_bad_input_is_one_line_error_not_traceback(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = subprocess.run([sys.executable, "-m", "nesf_viz.cli", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
