import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nesf_viz.checkpoints import load_checkpoint
from nesf_viz.errors import CheckpointError, ConfigError, DatasetError
from nesf_viz.model import NeSFConfig, position_field_channels
from nesf_viz.train import LOSS_PARTS, learning_rate_at, train
from nesf_viz.train_config import RECIPES, TrainConfig, make_train_config


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # multithreaded CPU reductions are not bit-reproducible
    yield
    torch.set_num_threads(n)


def _small(synthetic_small, n_train=24):
    return synthetic_small["train"][:n_train], synthetic_small["val"][:8]


def test_short_training_lowers_every_loss_part(synthetic_small, tmp_path):
    tr, va = _small(synthetic_small, 48)
    res = train(tr, va, tmp_path, TrainConfig(epochs=12, batch_size=16, device="cpu"), progress=False)
    h = res.history
    for part in LOSS_PARTS:
        first, last = h[part][0], min(h[part][-3:])
        assert last < 0.8 * first, (part, h[part])
    assert h["val_loss"][-1] < h["val_loss"][0]
    assert h["epoch"] == list(range(1, 13))


def test_resume_after_kill_is_exact(synthetic_small, tmp_path, one_thread):
    tr, va = _small(synthetic_small)
    cfg = TrainConfig(epochs=4, batch_size=8, device="cpu")
    full = train(tr, va, tmp_path / "full", cfg, progress=False)

    class Killed(Exception):
        pass

    def kill_after_epoch_2(report):
        if report.epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(tr, va, tmp_path / "part", cfg, callbacks=[kill_after_epoch_2], progress=False)
    assert torch.load(tmp_path / "part" / "last.pt", weights_only=True)["epoch"] == 2
    resumed = train(tr, va, tmp_path / "part", cfg, resume=True, progress=False)
    assert resumed.history["loss"] == full.history["loss"]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_resume_without_checkpoint_is_a_clear_error(synthetic_small, tmp_path):
    tr, va = _small(synthetic_small)
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        train(tr, va, tmp_path, TrainConfig(epochs=1), resume=True, progress=False)


def test_callbacks_get_history_and_time_budget_stops(synthetic_small, tmp_path):
    tr, va = _small(synthetic_small)
    seen = []
    res = train(tr, va, None, TrainConfig(epochs=50, batch_size=8, device="cpu", max_minutes=0.02),
                callbacks=[lambda r: seen.append((r.epoch, len(r.history["loss"])))], progress=False)
    assert seen and all(e == n for e, n in seen)
    assert len(seen) < 50 and "time budget" in res.stopped_because


def test_early_stopping(synthetic_small):
    tr, va = _small(synthetic_small, 12)
    res = train(tr, va, None, TrainConfig(epochs=40, batch_size=6, device="cpu", learning_rate=0.0,
                                          early_stopping_patience_epochs=2), progress=False)
    val = res.history["val_loss"]
    best = val.index(min(val))
    assert "early stopping" in res.stopped_because
    assert len(val) == best + 1 + 2  # exactly `patience` epochs without improvement


def test_empty_sets_and_bad_checkpoints_are_named_errors(synthetic_small, tmp_path):
    tr, va = _small(synthetic_small)
    with pytest.raises(DatasetError, match="training set is empty"):
        train([], va, None, progress=False)
    with pytest.raises(DatasetError, match="validation set is empty"):
        train(tr, [], None, progress=False)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or not a nesf_viz checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_cuda_device_without_gpu_is_a_clear_error(synthetic_small):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    tr, va = _small(synthetic_small)
    from nesf_viz.errors import DeviceError

    with pytest.raises(DeviceError, match="no CUDA GPU"):
        train(tr, va, None, TrainConfig(epochs=1, device="cuda"), progress=False)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        load_checkpoint(__import__("nesf_viz.assets", fromlist=["x"]).checkpoint_path("synthetic"), "cuda")


def test_ddp_two_cpu_ranks(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [str(torchrun), "--nproc_per_node=2", "--master_port=29533", str(worker), str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # identical weights (checked every step too)
    assert ranks[0]["loss"] == ranks[1]["loss"]  # the logged loss is all-reduced
    assert ranks[0]["loss"][-1] < 0.8 * ranks[0]["loss"][0]
    assert (tmp_path / "last.pt").is_file()


@pytest.mark.slow
def test_a_few_cpu_epochs_lower_every_loss_part(tmp_path):
    from nesf_viz.data import load_crystals

    # 480 training crystals, 4 epochs of the paper's recipe (~1-4 min on a 2-core CPU): every
    # part falls. Epochs, not minutes: a wall-clock budget on a shared machine made this flaky.
    tr, va = load_crystals("synthetic:600", "train"), load_crystals("synthetic:600", "val")
    res = train(tr, va, tmp_path, TrainConfig(epochs=4, batch_size=32, device="cpu"), progress=False)
    h = res.history
    for part in LOSS_PARTS:
        assert min(h[part][-2:]) < 0.8 * h[part][0], (part, h[part])  # species (weight 0.1) falls slowest: -25 % here


def test_mixed_precision_option_trains(synthetic_small):
    tr, va = _small(synthetic_small, 32)
    res = train(tr, va, None, TrainConfig(epochs=6, batch_size=16, device="cpu", mixed_precision=True),
                progress=False)
    assert res.history["loss"][-1] < 0.8 * res.history["loss"][0]
    assert all(v == v for v in res.history["loss"])  # no NaN


def test_cosine_schedule_warms_up_peaks_and_decays_to_its_floor():
    cfg = TrainConfig(lr_schedule="cosine", learning_rate=2e-3, warmup_epochs=2, epochs=12, final_lr_fraction=0.1)
    lr = [learning_rate_at(cfg, e / 4) for e in range(0, 12 * 4 + 1)]
    warm, decay = lr[: 2 * 4 + 1], lr[2 * 4:]
    assert all(a < b for a, b in zip(warm[:-1], warm[1:]))  # rising during warm-up
    assert all(a > b for a, b in zip(decay[:-1], decay[1:]))  # then falling
    assert lr[8] == pytest.approx(2e-3) and lr[-1] == pytest.approx(2e-4)
    assert learning_rate_at(cfg, 7.0) == pytest.approx(2e-4 + 0.5 * 1.8e-3)  # half-way: the mean
    paper = TrainConfig()
    assert [learning_rate_at(paper, e) for e in (0, 639.9, 640, 1280)] == [1e-3, 1e-3, 5e-4, 2.5e-4]


def test_recipes_are_one_mechanism_and_options_override_them():
    assert TrainConfig.paper() == TrainConfig()
    quick = TrainConfig.quick()
    assert quick.mixed_precision and quick.species_loss_weight == 1.0 and quick.encoder_dropout == 0.0
    assert quick.lr_schedule == "cosine" and quick.sampling.species_queries_per_atom is not None
    assert set(RECIPES) == {"paper", "fast", "bf16", "quick"}
    cfg = make_train_config("paper", species_loss_weight=1.0, species_queries_per_atom=27, epochs=None)
    assert cfg.species_loss_weight == 1.0 and cfg.sampling.species_queries_per_atom == 27
    assert cfg.epochs == 3200 and cfg.learning_rate == 1e-3  # unset (None) options keep the recipe's
    with pytest.raises(ConfigError, match="unknown training option 'speed'"):
        make_train_config("quick", speed=2)
    with pytest.raises(ConfigError, match="recipe must be one of"):
        make_train_config("turbo")
    with pytest.raises(ConfigError, match="batch_size must be > 0"):
        TrainConfig(batch_size=0)


def test_quick_recipe_trains_and_resumes_exactly(synthetic_small, tmp_path, one_thread):
    tr, va = _small(synthetic_small)
    # the cosine schedule is set per step from (epoch, step): a resumed run continues it exactly
    cfg = TrainConfig.quick(epochs=3, batch_size=8, device="cpu")
    full = train(tr, va, tmp_path / "full", cfg, progress=False)
    assert full.model.config.encoder_dropout == 0.0  # the recipe's override reaches the network
    assert load_checkpoint(tmp_path / "full").model_config.encoder_dropout == 0.0
    lrs = full.history["lr"]
    assert lrs[0] > lrs[-1] and lrs[-1] == pytest.approx(learning_rate_at(cfg, 3 - 1 / 3))

    def stop_after_1(report):
        if report.epoch == 1:
            raise KeyboardInterrupt

    part = train(tr, va, tmp_path / "part", cfg, callbacks=[stop_after_1], progress=False)
    assert part.stopped_because.startswith("interrupted by the user after epoch 1")  # a clean stop
    resumed = train(tr, va, tmp_path / "part", cfg, resume=True, progress=False)
    assert resumed.history["loss"] == full.history["loss"]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_warm_start_takes_weights_vocab_and_box_and_refuses_unknown_elements(synthetic_small, tmp_path):
    from nesf_viz.errors import UnknownSpeciesError

    tr, va = _small(synthetic_small, 16)
    src = train(tr, va, tmp_path / "src", TrainConfig(epochs=2, batch_size=8, device="cpu"), progress=False)
    frozen = dataclasses.replace(TrainConfig(epochs=1, batch_size=8, device="cpu"), learning_rate=0.0)
    warm = train(tr[:8], va, tmp_path / "warm", frozen, progress=False, init_from=src.last_checkpoint)
    assert warm.vocab == src.vocab and warm.box == src.box
    warm_params = dict(warm.model.named_parameters())  # lr 0: the warm run holds the source's weights
    for k, v in src.model.named_parameters():  # (batch-norm running stats move in train mode)
        assert torch.equal(v, warm_params[k]), k
    assert torch.load(warm.last_checkpoint, weights_only=True)["init_from"] == str(src.last_checkpoint)
    scratch = train(tr[:8], va, tmp_path / "scratch", frozen, progress=False)
    assert warm.history["val_loss"][0] < scratch.history["val_loss"][0]
    odd = dataclasses.replace(tr[0], atomic_numbers=tr[0].atomic_numbers.copy(), id="odd")
    odd.atomic_numbers[0] = 118  # Og: in no synthetic vocabulary
    with pytest.raises(UnknownSpeciesError, match="Og in 'odd'"):
        train([odd], va, tmp_path / "bad", frozen, progress=False, init_from=src.last_checkpoint)
    # another network asked for beside a warm start is a named error, not torch's state-dict mismatch
    wide = NeSFConfig(num_species=1, position_field_channels=position_field_channels(256))
    with pytest.raises(ConfigError, match=r"warm start keeps .*position_field_channels \(512, 256"):
        train(tr[:8], va, tmp_path / "wide", frozen, wide, progress=False, init_from=src.last_checkpoint)
    same = NeSFConfig(num_species=1)  # the paper's shape, any vocabulary: fine
    train(tr[:8], va, tmp_path / "same", frozen, same, progress=False, init_from=src.last_checkpoint)


def test_mixed_precision_auto_resolves_to_the_hardware_and_is_recorded(synthetic_small, tmp_path):
    from nesf_viz.device import native_bf16

    assert TrainConfig.quick().mixed_precision == "auto"
    with pytest.raises(ConfigError, match="mixed_precision must be True, False or 'auto'"):
        TrainConfig(mixed_precision="yes")
    tr, va = _small(synthetic_small, 8)
    train(tr, va, tmp_path, TrainConfig(epochs=1, batch_size=8, device="cpu", mixed_precision="auto"), progress=False)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["train_config"]["mixed_precision"]
    assert saved is native_bf16(torch.device("cpu"))


def test_progress_total_follows_the_time_budget():
    from nesf_viz.train import epochs_in_budget

    paper = TrainConfig()  # 3200 epochs, no budget: the bar counts epochs
    assert epochs_in_budget(paper, 3, 10.0, 30.0) == 3200
    budget = TrainConfig(max_minutes=2)  # 120 s at 10 s/epoch: 12 epochs in all
    assert epochs_in_budget(budget, 3, 10.0, 30.0) == 12
    assert epochs_in_budget(budget, 12, 10.0, 119.0) == 12  # nothing more fits
    assert epochs_in_budget(dataclasses.replace(budget, epochs=5), 3, 10.0, 30.0) == 5


def test_an_interrupt_keeps_the_checkpoint_returns_its_model_and_says_so(synthetic_small, tmp_path, capsys):
    tr, va = _small(synthetic_small, 16)
    calls = []

    def interrupt_in_epoch_3(report):  # as Ctrl-C / Kernel > Interrupt arriving mid-training
        calls.append(report.epoch)
        if report.epoch == 2:
            raise KeyboardInterrupt

    res = train(tr, va, tmp_path, TrainConfig(epochs=5, batch_size=8, device="cpu"), progress=False,
                callbacks=[interrupt_in_epoch_3])
    assert res.stopped_because.startswith("interrupted by the user after epoch 2")
    assert "resume=True (--resume) continues exactly" in res.stopped_because
    # progress=False (a notebook's panel watching): the result says it, once; stderr stays quiet
    assert "interrupted by the user" not in capsys.readouterr().err
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved.epoch == 2
    for k, v in saved.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k
    more = train(tr, va, tmp_path, TrainConfig(epochs=3, batch_size=8, device="cpu"), progress=False, resume=True)
    assert more.history["epoch"] == [1, 2, 3]


def test_step_callbacks_see_every_step_and_change_nothing(synthetic_small):
    tr, va = _small(synthetic_small, 16)
    cfg = TrainConfig(epochs=2, batch_size=8, device="cpu")
    seen = []
    a = train(tr, va, None, cfg, progress=False, step_callbacks=[seen.append])
    b = train(tr, va, None, cfg, progress=False)
    assert [r.epoch for r in seen] == [0.5, 1.0, 1.5, 2.0]  # 16 crystals, batches of 8
    assert [r.step for r in seen] == [1, 2, 1, 2] and {r.steps_per_epoch for r in seen} == {2}
    assert all(set(r.parts) >= {"loss", "loss_pos", "loss_spec"} for r in seen)
    # the epoch's training loss is the crystal-weighted mean of its steps (equal batches here)
    assert a.history["loss"][1] == pytest.approx((seen[2].parts["loss"] + seen[3].parts["loss"]) / 2)
    for k, v in a.model.state_dict().items():  # an observer: the same run as without it
        assert torch.equal(v, b.model.state_dict()[k]), k


def test_stop_event_ends_after_the_step_and_keeps_the_last_whole_epoch(synthetic_small, tmp_path, capsys):
    import threading

    tr, va = _small(synthetic_small, 16)
    stop = threading.Event()

    def press_stop(report):  # as a Stop button clicked in epoch 2, from another thread
        if report.epoch > 1:
            stop.set()

    res = train(tr, va, tmp_path, TrainConfig(epochs=5, batch_size=8, device="cpu"), progress=False,
                step_callbacks=[press_stop], stop=stop)
    assert res.stopped_because.startswith("stopped by the user after epoch 1")
    assert res.history["epoch"] == [1]
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved.epoch == 1
    for k, v in saved.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k


def test_fit_to_budget_sizes_the_epochs_after_the_first_so_the_cosine_schedule_anneals(synthetic_small, tmp_path):
    tr, va = _small(synthetic_small, 16)
    cfg = TrainConfig(epochs=500, batch_size=8, device="cpu", lr_schedule="cosine", warmup_epochs=1.0,
                      max_minutes=0.1)
    seen = []
    res = train(tr, va, tmp_path, cfg, progress=False, fit_to_budget=True, callbacks=[seen.append])
    total = seen[0].epochs_total
    assert 1 < total < 500 and all(r.epochs_total == total for r in seen)
    # the run ends on (or, on a machine that slowed down, one short of) its sized epochs, annealed
    assert res.history["epoch"][-1] >= total - 1
    assert res.history["lr"][-1] < 0.1 * max(res.history["lr"])
    assert load_checkpoint(tmp_path / "last.pt").train_config.epochs == total  # resume continues the sized run
    # without it the epochs stay as given and the budget cuts the schedule short
    plain = []
    cut = train(tr, va, None, cfg, progress=False, callbacks=[plain.append])
    assert plain[0].epochs_total == 500 and "time budget" in cut.stopped_because
