"""The reproduction protocol: tasks and splits, a tiny end-to-end run, resume, tables."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch

from nesf_viz import NeSF
from nesf_viz.errors import DatasetError
from nesf_viz.experiment import (
    PAPER,
    DatasetUnavailable,
    ExperimentConfig,
    _Prober,
    default_data_root,
    make_tasks,
    markdown_table,
    run_experiment,
    summarize,
)

DATA = default_data_root()
needs_data = pytest.mark.skipif(not (DATA / "nesf_paper").is_dir(), reason=f"shared datasets not found at {DATA}")


def test_missing_data_is_a_named_skip_and_unknown_names_fail(tmp_path):
    with pytest.raises(DatasetUnavailable, match="lcs6_train.csv not found"):
        make_tasks("lcs6", data_root=tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        make_tasks("lcs7", data_root=tmp_path)
    (task,) = make_tasks("synthetic", data_root=tmp_path)
    assert len(task.train) == 1920 and len(task.val) == 240 and len(task.test) == 240


@needs_data
def test_held_out_splits_never_leak_into_training():
    cfg = ExperimentConfig(augment_synthetic_n=50, ybco13_folds=2)
    for name in ("icsg3d", "icsg3d+synthetic", "perov_5", "ybco13"):
        for task in make_tasks(name, cfg):
            tr, va, te = ({c.id for c in s} for s in (task.train, task.val, task.test))
            assert not (tr & te) and not (va & te) and not (tr & va), task.run
    (ic,) = make_tasks("icsg3d", cfg)
    (aug,) = make_tasks("icsg3d+synthetic", cfg)
    assert len(aug.train) == len(ic.train) + 50 and [c.id for c in aug.val] == [c.id for c in ic.val]
    (pv,) = make_tasks("perov_5", cfg)
    n = len(pv.train) + len(pv.val) + len(pv.test)
    assert abs(len(pv.test) - 0.1 * n) <= 1 and abs(len(pv.val) - 0.1 * n) <= 1


def test_prober_snapshots_first_epoch_and_every_period(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"x")
    prober = _Prober(tmp_path, minutes=1.0)
    elapsed = 0.0
    for epoch, seconds in enumerate([20, 20, 30, 50, 10, 100], start=1):  # crosses 60 s at epochs 3, 4, 6
        elapsed += seconds
        prober(SimpleNamespace(epoch=epoch, elapsed_seconds=elapsed, history={"seconds": [seconds]}))
    assert sorted(p.name for p in tmp_path.glob("probe_*.pt")) == [
        "probe_000001.pt", "probe_000003.pt", "probe_000004.pt", "probe_000006.pt"]


def test_tiny_protocol_run_writes_tables_curves_and_resumes(tmp_path, capsys):
    cfg = ExperimentConfig(recipe="fast", epochs=2, limit_train=24, eval_limit=3, decode="fast",
                         probe_minutes=0.001, probe_crystals=3, device="cpu")
    out = tmp_path / "bench"
    state = run_experiment(["synthetic", "lcs6"], cfg, out, data_root=tmp_path / "no-data")
    assert "lcs6" in state["skipped"] and "not found" in state["skipped"]["lcs6"]
    (run,) = state["runs"]
    assert run["epochs"] == 2 and run["n_test_evaluated"] == 3 and run["n_train"] == 24
    assert [p["epoch"] for p in run["curve"]] == [1, 2]
    for key in ("atom_count_error_pct", "match_rate_pct", "spacegroup_recovery_pct",
                "symmetrized_position_error_actual_A", "train_minutes", "device"):
        assert key in run
    saved = json.loads((out / "results.json").read_text())  # strict JSON: NaN written as null
    assert saved["runs"][0]["run"] == "synthetic" and saved["summary"][0]["n_runs"] == 1
    md = (out / "results.md").read_text()
    assert "synthetic [fast recipe, fast decode]" in md and "skipped lcs6" in md
    assert (out / "time_to_accuracy.html").stat().st_size > 100_000
    mtime = (out / "runs" / "fast" / "synthetic" / "seed0" / "best.pt").stat().st_mtime
    again = run_experiment(["synthetic"], cfg, out, data_root=tmp_path / "no-data")  # nothing left to do
    assert len(again["runs"]) == 1
    assert (out / "runs" / "fast" / "synthetic" / "seed0" / "best.pt").stat().st_mtime == mtime
    assert run["metrics_periodic"] is False


def test_a_warm_started_run_starts_from_the_shipped_model_and_records_how_it_ran(tmp_path):
    from nesf_viz.assets import checkpoint_path
    from nesf_viz.checkpoints import load_checkpoint

    cfg = ExperimentConfig(recipe="quick", epochs=1, limit_train=16, eval_limit=2, decode="fast", probe_minutes=10,
                         probe_crystals=2, device="cpu", init_from="synthetic",
                         train_options=(("pair_max_angstrom", 2.5),))
    (run,) = run_experiment(["synthetic"], cfg, tmp_path, data_root=tmp_path / "no-data",
                          command="nesf-viz benchmark ...")["runs"]
    assert run["recipe"] == "quick+pair_max_angstrom=2.5+from=synthetic"
    assert run["command"] == "nesf-viz benchmark ..." and run["precision"] in ("bf16", "float32")
    assert isinstance(run["bf16_native"], bool) and len(run["history"]["cpu_seconds"]) == 1
    assert "match_rate_pct" in run["curve"][0] and run["curve"][0]["cpu_minutes"] > 0
    ck = load_checkpoint(tmp_path / "runs" / run["recipe"] / "synthetic" / "seed0" / "last.pt")
    shipped = load_checkpoint(checkpoint_path("synthetic"))
    assert ck.raw["init_from"] == str(checkpoint_path("synthetic")) and ck.vocab == shipped.vocab
    assert ck.train_config.sampling.pair_max_angstrom == 2.5


def test_periodic_option_is_scored_with_minimum_image_metrics(tmp_path, monkeypatch):
    import nesf_viz.experiment as protocol

    cfg = ExperimentConfig(recipe="fast", epochs=1, limit_train=8, eval_limit=2, decode="fast",
                         probe_minutes=1000, device="cpu", periodic=True)
    seen = []
    real = protocol.metrics_of
    monkeypatch.setattr(protocol, "metrics_of", lambda *a, **kw: seen.append(kw.get("periodic")) or real(*a, **kw))
    (run,) = run_experiment(["synthetic"], cfg, tmp_path, data_root=tmp_path / "no-data")["runs"]
    assert run["recipe"] == "fast+periodic" and run["metrics_periodic"] is True
    assert seen and all(seen)  # test split, its symmetrised copy and the probe curve


def test_table_shows_mean_std_and_the_papers_numbers():
    base = {"recipe": "fast", "decode": "paper", "training_set": "t", "test_set": "v", "n_train": 10,
            "n_test_evaluated": 5, "max_minutes": 8.0, "device": "cpu", "epochs": 4, "train_minutes": 8.0}
    runs = [dict(base, dataset="icsg3d", atom_count_error_pct=v, position_error_actual_A=0.1) for v in (1.0, 3.0)]
    (row,) = summarize(runs)
    assert row["n_runs"] == 2 and row["atom_count_error_pct"] == (2.0, pytest.approx(2 ** 0.5))
    md = markdown_table([row])
    assert "2 ± 1.4" in md and "CPU budget 8 min/run" in md
    assert f"{PAPER['icsg3d']['atom_count_error_pct'][0]:.3g} ± 0.25" in md


def test_options_name_their_rows_and_reach_training_and_decoding():
    cfg = ExperimentConfig(recipe="fast", positional_encoding_freqs=10, periodic=True)
    assert cfg.label == "fast+pe10+periodic" and ExperimentConfig().label == "paper"
    assert cfg.train_config(3).periodic_targets and cfg.train_config(3).mixed_precision
    assert cfg.train_config(3).seed == 3 and cfg.decode_config().periodic
    fixed = ExperimentConfig(recipe="fast", positional_encoding_freqs=6,
                           positional_encoding_longest_wavelength_angstrom=32.0, positional_encoding_keep_input=True)
    assert fixed.label == "fast+pe6w32+xyz"
    net = NeSF(config=dataclasses.replace(fixed.model_config(), num_species=3))
    assert net.position_net.point_in.in_features == 39
    wide = ExperimentConfig(recipe="quick", position_width=256)
    assert wide.label == "quick+pw256"
    def widths(cfg):
        net = NeSF(config=dataclasses.replace(cfg.model_config(), num_species=3))
        return [m.out_features for m in net.position_net.modules() if isinstance(m, torch.nn.Linear)]

    paper = widths(ExperimentConfig())
    assert widths(wide) == [2 * w for w in paper[:-1]] + [3]  # the paper's shape, twice as wide
    with pytest.raises(ValueError, match="recipe"):
        ExperimentConfig(recipe="turbo").train_config(0)
