import json
import os
import socket
import sys

import pytest
import torch

from nesf_viz.checkpoints import RunFolder, load_checkpoint
from nesf_viz.errors import CheckpointError
from nesf_viz.train import train
from nesf_viz.train_config import TrainConfig


def _small(synthetic_small):
    return synthetic_small["train"][:8], synthetic_small["val"][:4]


ONE = TrainConfig(epochs=1, batch_size=8, device="cpu")


def test_a_live_owner_refuses_a_second_trainer_and_a_dead_ones_lock_is_taken_over(synthetic_small, tmp_path):
    tr, va = _small(synthetic_small)
    run = RunFolder(tmp_path)
    with run.lock():
        assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()
        with pytest.raises(CheckpointError, match=rf"being trained by another process \(pid {os.getpid()}"):
            train(tr, va, tmp_path, ONE, progress=False)
    assert not run.lock_path.exists() and not run.holds_run()
    dead = 2**22 + 12345  # above Linux's pid_max default: no such process
    run.lock_path.write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    (tmp_path / ".last.pt.tmp999").write_bytes(b"x" * 100)  # a killed writer's temp file
    train(tr, va, tmp_path, ONE, progress=False)
    assert run.last.is_file() and not run.lock_path.exists()
    assert not list(tmp_path.glob(".*tmp*"))


def test_unwritable_outputs_fail_before_any_work(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        RunFolder(f).check_writable()
    with pytest.raises(CheckpointError, match="cannot be written"):
        RunFolder(f / "under").check_writable()


def test_best_is_written_before_last(synthetic_small, tmp_path, monkeypatch):
    T = sys.modules["nesf_viz.train"]  # the package exports a function of the same name

    order = []
    real = T.save_checkpoint
    monkeypatch.setattr(T, "save_checkpoint", lambda p, d: (order.append(p.name), real(p, d)))
    tr, va = _small(synthetic_small)
    train(tr, va, tmp_path, ONE, progress=False)
    assert order == ["best.pt", "last.pt"]  # epoch 1 is always best


def _damage(src, dst, how):
    raw = torch.load(src, weights_only=True)
    if how == "missing key":
        del raw["vocab"]
    elif how == "renamed weights":
        raw["model_state"] = {k.replace("encoder", "enc"): v for k, v in raw["model_state"].items()}
    elif how == "other shapes":
        k = next(k for k, v in raw["model_state"].items() if v.ndim == 2)
        raw["model_state"][k] = torch.zeros(3, 3)
    elif how == "extra config key":
        raw["model_config"]["frobnicate"] = 1
    elif how == "nan box":
        raw["box_min_angstrom"] = [float("nan"), 0.0, 0.0]
    torch.save(raw, dst)


@pytest.mark.parametrize("how,message", [
    ("missing key", "lacks vocab"),
    ("renamed weights", "do not fit this version"),
    ("other shapes", "do not fit this version"),
    ("extra config key", "do not fit this version"),
    ("nan box", "not 6 finite numbers"),
])
def test_damaged_checkpoints_are_checkpoint_errors_for_load_and_resume(synthetic_small, tmp_path, how, message):
    tr, va = _small(synthetic_small)
    train(tr, va, tmp_path / "run", ONE, progress=False)
    _damage(tmp_path / "run" / "last.pt", tmp_path / "bad.pt", how)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.pt")
    _damage(tmp_path / "run" / "last.pt", tmp_path / "run" / "last.pt", how)
    with pytest.raises(CheckpointError, match=message):
        train(tr, va, tmp_path / "run", TrainConfig(epochs=2, batch_size=8, device="cpu"), progress=False, resume=True)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04trunc", b"not a checkpoint at all"])
def test_resume_from_an_empty_truncated_or_foreign_last_pt_is_named(synthetic_small, tmp_path, content):
    tr, va = _small(synthetic_small)
    (tmp_path / "last.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="--resume: .*could not be read as a checkpoint"):
        train(tr, va, tmp_path, ONE, progress=False, resume=True)


def test_a_kill_between_the_best_and_last_writes_is_repaired_by_resume(synthetic_small, tmp_path, monkeypatch):
    T = sys.modules["nesf_viz.train"]
    tr, va = _small(synthetic_small)
    real = T.save_checkpoint

    class Killed(Exception):
        pass

    def kill_before_last_of_epoch_2(path, data):
        if path.name == "last.pt" and data["epoch"] == 2 and data["best_epoch"] == 1:
            raise Killed  # best.pt of epoch 2 is on disk, last.pt still says epoch 1
        real(path, data)

    monkeypatch.setattr(T, "save_checkpoint", kill_before_last_of_epoch_2)
    cfg = TrainConfig(epochs=3, batch_size=8, device="cpu", learning_rate=1e-3)
    try:
        train(tr, va, tmp_path, cfg, progress=False)
    except Killed:
        pass
    else:
        pytest.skip("epoch 2 did not improve on epoch 1 here, so there was no best.pt write to kill after")
    monkeypatch.setattr(T, "save_checkpoint", real)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    train(tr, va, tmp_path, cfg, progress=False, resume=True)  # recomputes epoch 2 exactly
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == last["best_epoch"] + 1 and best["best_val_loss"] == last["best_val_loss"]
