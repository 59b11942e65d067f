import dataclasses
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

from nesf_viz.checkpoints import RunFolder, export_checkpoint, load_checkpoint, save_checkpoint
from nesf_viz.errors import CheckpointError
from nesf_viz.train import LOSS_PARTS, train
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


def test_checkpoint_loads_weights_only_and_rebuilds_model(synthetic_small, tmp_path):
    tr, va = synthetic_small["train"][:24], synthetic_small["val"][:8]
    res = train(tr, va, tmp_path, TrainConfig(epochs=2, batch_size=8, device="cpu"), progress=False)
    raw = torch.load(tmp_path / "last.pt", weights_only=True)  # no pickled classes
    assert raw["epoch"] == 2 and set(raw["history"]) >= {"loss", "val_loss", *LOSS_PARTS}
    ck = load_checkpoint(tmp_path)
    assert ck.vocab == res.vocab and ck.box == res.box and ck.epoch in (1, 2)
    last = load_checkpoint(tmp_path / "last.pt")
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, last.model.state_dict()[k])
    assert not last.model.training
    assert not list(tmp_path.glob(".*tmp*"))


def test_atomic_save_keeps_old_file_when_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    save_checkpoint(target, {"format": 1, "x": torch.ones(2)})

    def broken_save(obj, f):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="cannot write .*last.pt .*disk full"):
        save_checkpoint(target, {"format": 1, "x": torch.zeros(2)})
    assert torch.equal(torch.load(target, weights_only=True)["x"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [target]


def test_a_run_folder_is_never_overwritten_without_being_asked(synthetic_small, tmp_path):
    tr, va = synthetic_small["train"][:16], synthetic_small["val"][:8]
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu")
    train(tr, va, tmp_path, cfg, progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a training run.*--resume.*--overwrite"):
        train(tr, va, tmp_path, cfg, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == before
    train(tr, va, tmp_path, dataclasses.replace(cfg, seed=1), progress=False, overwrite=True)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["train_config"]["seed"] == 1


def test_export_refuses_to_overwrite_its_source(synthetic_small, tmp_path):
    tr, va = synthetic_small["train"][:16], synthetic_small["val"][:8]
    train(tr, va, tmp_path, TrainConfig(epochs=1, batch_size=8, device="cpu"), progress=False)
    for src in (tmp_path / "last.pt", tmp_path):
        dst = tmp_path / ("last.pt" if src.name == "last.pt" else "best.pt")
        with pytest.raises(CheckpointError, match="would overwrite its source"):
            export_checkpoint(src, dst)
    assert "optimizer_state" in torch.load(tmp_path / "last.pt", weights_only=True)
    slim = export_checkpoint(tmp_path, tmp_path / "slim.pt")
    assert "optimizer_state" not in torch.load(slim, weights_only=True)


def test_export_drops_optimizer_and_cannot_resume(synthetic_small, tmp_path):
    tr, va = synthetic_small["train"][:16], synthetic_small["val"][:6]
    train(tr, va, tmp_path / "run", TrainConfig(epochs=1, batch_size=8, device="cpu"), progress=False)
    slim = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "slim" / "last.pt")
    assert slim.stat().st_size < 0.5 * (tmp_path / "run" / "last.pt").stat().st_size
    a, b = load_checkpoint(tmp_path / "run" / "last.pt"), load_checkpoint(slim)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(tr, va, tmp_path / "slim", TrainConfig(epochs=2), resume=True, progress=False)
