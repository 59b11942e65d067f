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
        (["train", "--train", "synthetic:30", "--val", "synthetic:30", "--out", "x", "--batch-size", "0"],
         "argument --batch-size: must be a positive integer"),
        (["train", "--train", "synthetic:30", "--val", "synthetic:30", "--out", "x", "--species-queries", "-2"],
         "argument --species-queries: must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_error_not_traceback(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = subprocess.run([sys.executable, "-m", "nesf_viz.cli", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_quick_recipe_from_the_cli_and_resume_keeps_its_schedule(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--train", "synthetic:60", "--val", "synthetic:60", "--out", str(out), "--recipe", "quick",
            "--epochs", "2", "--batch-size", "8", "--limit", "16", "--device", "cpu", "--species-queries", "8"]
    assert main(args) == 0
    raw = torch.load(out / "last.pt", weights_only=True)
    cfg = raw["train_config"]
    from nesf_viz.device import native_bf16

    assert cfg["lr_schedule"] == "cosine" and cfg["species_loss_weight"] == 1.0
    assert cfg["mixed_precision"] is native_bf16(torch.device("cpu"))  # the quick recipe's 'auto', resolved
    assert cfg["sampling"]["species_queries_per_atom"] == 8 and raw["model_config"]["encoder_dropout"] == 0.0
    assert "recipe quick: 2 epochs, batch 8" in capsys.readouterr().out
    # resuming without naming the recipe continues the run's own recipe (not the paper's 3200 epochs)
    assert main(["train", "--train", "synthetic:60", "--val", "synthetic:60", "--out", str(out), "--limit", "16",
                 "--device", "cpu", "--resume"]) == 0
    raw = torch.load(out / "last.pt", weights_only=True)
    assert raw["train_config"]["epochs"] == 2 and raw["train_config"]["lr_schedule"] == "cosine"
    assert "nothing to do" in capsys.readouterr().out


def test_decode_one_cif_into_a_folder_of_cifs_with_a_summary(tmp_path, capsys):
    from pymatgen.core import Lattice, Structure

    cif = tmp_path / "nacl.cif"
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(cif))
    before = cif.read_bytes()
    out = tmp_path / "decoded"
    assert main(["decode", "--checkpoint", "synthetic", "--data", str(cif), "--out", str(out),
                 "--decode", "fast", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["nacl.cif", "summary.csv"]
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("id,true_formula,decoded_formula")
    assert summary[1].startswith("nacl,NaCl,NaCl,8,8,True,True")
    assert Structure.from_file(out / "nacl.cif").composition.reduced_formula == "NaCl"
    assert "1/1 decoded right" in capsys.readouterr().out
    assert cif.read_bytes() == before  # the input is never touched
    # a file where the folder should go, or the input itself as output: one named line, exit 2
    (tmp_path / "taken").write_text("x")
    for bad_out, message in ((tmp_path / "taken", "is an existing file"), (cif, "is the input itself")):
        r = subprocess.run([sys.executable, "-m", "nesf_viz.cli", "decode", "--checkpoint", "synthetic", "--data",
                            str(cif), "--out", str(bad_out), "--device", "cpu"], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert cif.read_bytes() == before


def test_every_option_of_every_command_says_what_it_does(capsys):
    import argparse

    from nesf_viz.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"train", "decode", "evaluate", "demo", "export", "benchmark"}
    bare = [f"{name} {'/'.join(a.option_strings)}" for name, sub in commands.items() for a in sub._actions
            if a.option_strings and not (a.help or "").strip()]
    assert not bare, f"options without help text: {bare}"
    for command in ("evaluate", "decode"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        for option, words in (("--data", "a CSV with a cif column"), ("--limit", "only the first N crystals"),
                              ("--device", "auto (CUDA when present")):
            assert option in text and words in " ".join(text.split()), (command, option)
        if command == "evaluate":
            assert "--json" in text and "JSON file" in " ".join(text.split())
