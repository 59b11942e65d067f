"""Evaluation drivers: exact fields on a tiny CSV give zero errors and the exact JSON keys."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

from nesf_viz.data import DataSource
from nesf_viz.decode import DecodeConfig
from nesf_viz.evaluate import run_decode, run_evaluate
from nesf_viz.metrics import METRIC_KEYS

EXPECTED_KEYS = {
    "n_structures", "atom_count_error_pct", "position_error_actual_A", "position_error_detected_A",
    "species_error_actual_pct", "species_error_detected_pct", "length_mae_A", "angle_mae_deg",
    "match_rate_pct", "match_rmse", "n_no_atoms", "decode_structures_per_s",
}


def _decode_module():
    """The module nesf_viz.decode (the package's attribute of that name is the function)."""
    import importlib

    return importlib.import_module("nesf_viz.decode")


@pytest.fixture
def tiny_csv(tmp_path):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    structures = {
        "nacl": Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "cscl": Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "srtio3": Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
    }
    path = tmp_path / "tiny.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "formula", "n_atoms", "cif"])
        for k, s in structures.items():
            w.writerow([k, s.composition.reduced_formula, len(s), str(CifWriter(s))])
    return path


def test_exact_fields_give_zero_errors_and_the_exact_keys(tiny_csv, tmp_path, capsys):
    out_json = tmp_path / "m.json"
    ev = run_evaluate(tiny_csv, json_out=out_json, device="cpu", progress=False)
    m = ev.to_dict()
    assert set(m) == EXPECTED_KEYS == set(METRIC_KEYS)
    assert m["n_structures"] == 3 and m["n_no_atoms"] == 0
    assert m["atom_count_error_pct"] == 0
    assert m["position_error_actual_A"] < 1e-3 and m["position_error_detected_A"] < 1e-3
    assert m["species_error_actual_pct"] == 0 and m["species_error_detected_pct"] == 0
    assert m["length_mae_A"] < 1e-5 and m["angle_mae_deg"] < 1e-4
    assert m["match_rate_pct"] == 100 and m["match_rmse"] < 1e-3
    assert m["decode_structures_per_s"] > 0
    on_disk = json.loads(out_json.read_text())
    assert set(on_disk) == EXPECTED_KEYS
    assert "atom-count error (%)" in capsys.readouterr().out  # the table was printed, metrics named
    assert ev.metrics.atom_count_error_pct == 0 and not ev.interrupted and "exact fields" in ev.label


def test_exact_fields_with_options_and_limit(tiny_csv):
    m = run_evaluate(DataSource(tiny_csv, limit=2), device="cpu", progress=False, match=False,
                     decode_config=DecodeConfig.fast()).to_dict()
    assert m["n_structures"] == 2 and m["atom_count_error_pct"] == 0
    assert m["match_rate_pct"] != m["match_rate_pct"]  # NaN when matching is skipped


def test_learned_path_with_a_tiny_checkpoint(tiny_csv, tmp_path):
    from nesf_viz.data import load_crystals
    from nesf_viz.train import train
    from nesf_viz.train_config import TrainConfig

    crystals = load_crystals(tiny_csv)
    train(crystals, crystals, tmp_path / "ck", TrainConfig(epochs=1, batch_size=4, device="cpu"),
          progress=False)
    cfg = DecodeConfig(num_moves=2)
    out_csv = tmp_path / "dec.csv"
    res = run_decode(tmp_path / "ck", tiny_csv, out_csv, device="cpu", decode_config=cfg)
    assert len(res) == 3
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["material_id"] for r in rows] == ["nacl", "cscl", "srtio3"]
    m = run_evaluate(tiny_csv, tmp_path / "ck", device="cpu", decode_config=cfg, progress=False,
                     match=False).to_dict()
    assert set(m) == EXPECTED_KEYS and m["n_structures"] == 3


def test_learned_metrics_are_the_decodes_own_and_a_converged_model_scores_well():
    from nesf_viz.assets import checkpoint_path
    from nesf_viz.checkpoints import load_checkpoint
    from nesf_viz.data import load_crystals
    from nesf_viz.decode import decode_crystals
    from nesf_viz.metrics import paper_metrics

    test = load_crystals("synthetic", "test")[:8]
    m = run_evaluate(DataSource("synthetic", limit=8), checkpoint_path("synthetic"), device="cpu",
                     decode_config=DecodeConfig.fast(), progress=False, verbose=False).to_dict()
    ck = load_checkpoint(checkpoint_path("synthetic"))
    direct = paper_metrics(test, decode_crystals(ck.model, test, box=ck.box, vocab=ck.vocab,
                                                 config=DecodeConfig.fast(), progress=False))
    assert m["n_structures"] == 8
    assert m["atom_count_error_pct"] == direct.atom_count_error_pct == 0.0
    assert m["species_error_actual_pct"] == pytest.approx(direct.species_error_actual_pct)
    assert m["position_error_actual_A"] == pytest.approx(direct.position_error_actual_A)
    assert m["position_error_actual_A"] < 0.06
    assert m["match_rate_pct"] >= 75.0


@pytest.mark.data
def test_exact_oracle_on_a_real_split():
    from .conftest import shared_data

    path = shared_data("nesf_paper/ybco13/fold0_test.csv")
    m = run_evaluate(path, device="cpu", progress=False, match=False,
                     decode_config=DecodeConfig(early_stop_tolerance_angstrom=0.0)).to_dict()
    assert m["n_structures"] == 5 and m["atom_count_error_pct"] == 0 and m["n_no_atoms"] == 0
    assert m["position_error_actual_A"] < 1e-5 and m["species_error_actual_pct"] == 0


def test_an_interrupted_decode_writes_the_batches_done(tmp_path, monkeypatch):
    import nesf_viz.evaluate as ev
    from nesf_viz.assets import checkpoint_path
    from nesf_viz.decode import decode as real_decode

    calls = []

    def decode_then_interrupt(*args, **kwargs):  # Ctrl-C arriving during the third batch
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(_decode_module(), "decode", decode_then_interrupt)
    with pytest.raises(KeyboardInterrupt, match="the first 4 crystals were decoded and written"):
        ev.run_decode(checkpoint_path("synthetic"), DataSource("synthetic:50", limit=5), tmp_path / "out",
                      batch_size=2, device="cpu", decode_config=ev.DecodeConfig.fast())
    assert len(list((tmp_path / "out").glob("*.cif"))) == 4
    assert len((tmp_path / "out" / "summary.csv").read_text().splitlines()) == 5  # header + 4 rows


def test_an_interrupted_evaluate_reports_the_metrics_of_what_it_decoded(tmp_path, monkeypatch, capsys):
    import nesf_viz.evaluate as ev
    from nesf_viz.decode import decode as real_decode

    calls = []

    def decode_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(_decode_module(), "decode", decode_then_interrupt)
    with pytest.raises(KeyboardInterrupt, match="metrics of the first 3 of 7 crystals written to"):
        ev.run_evaluate(DataSource("synthetic:80", limit=7), batch_size=3, match=False, progress=False,
                        json_out=tmp_path / "m.json")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n_structures"] == 3 and m["partial_of"] == 7 and m["atom_count_error_pct"] == 0.0
    assert "PARTIAL: interrupted after 3 of 7 crystals" in capsys.readouterr().out


@pytest.mark.parametrize("as_csv", [False, True])
def test_decode_streams_each_batch_to_disk_before_the_next(tmp_path, monkeypatch, as_csv):
    # a crash (not a clean interrupt) in the third batch: the first two batches are on disk already
    import nesf_viz.evaluate as ev
    from nesf_viz.assets import checkpoint_path
    from nesf_viz.decode import decode as real_decode

    calls = []

    def decode_then_crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(_decode_module(), "decode", decode_then_crash)
    out = tmp_path / ("out.csv" if as_csv else "out")
    if as_csv:
        out.write_text("an old file that the first batch replaces\n")
    with pytest.raises(RuntimeError, match="killed"):
        ev.run_decode(checkpoint_path("synthetic"), DataSource("synthetic:50", limit=6), out, batch_size=2,
                      device="cpu", decode_config=ev.DecodeConfig.fast())
    if as_csv:
        import csv

        rows = list(csv.reader(out.open()))
        assert rows[0] == ["material_id", "cif"] and len(rows) == 5 and all(r[1].startswith("#") for r in rows[1:])
    else:
        assert len(list(out.glob("*.cif"))) == 4
        assert len((out / "summary.csv").read_text().splitlines()) == 5  # header + 4 rows


def test_success_and_failure_of_stops_at_the_first_failure_and_prints_both_atom_by_atom(monkeypatch):
    import nesf_viz.evaluate as ev
    from nesf_viz.data import load_crystals

    crystals = load_crystals("synthetic", "test", limit=6)

    class Res:  # a decode that gets crystal 3 wrong (one atom lost)
        def __init__(self, part):
            self.part = part

        def to_crystals(self):
            out = list(self.part)
            for k, c in enumerate(out):
                if c.id == crystals[3].id:
                    out[k] = dataclasses.replace(c, positions_angstrom=c.positions_angstrom[1:],
                                                 atomic_numbers=c.atomic_numbers[1:])
            return out

    calls = []
    monkeypatch.setattr(ev, "decode_crystals", lambda model, part, **kw: calls.append(len(part)) or Res(part))

    class Ckpt:
        class model:
            @staticmethod
            def parameters():
                return iter([torch.zeros(1)])
        box = vocab = None

    found = ev.success_and_failure_of(Ckpt, crystals, chunk=2, limit=6)
    assert calls == [2, 2] and (found.right, found.wrong) == (0, 3)  # stopped after the chunk with the failure
    text = str(found)
    assert text.startswith("4 crystals decoded: 3/4 decoded right")
    assert text.count("every true atom and the decoded atom nearest to it") == 2
    none = ev.success_and_failure_of(Ckpt, crystals[:2], chunk=2)
    assert none.wrong is None and "no failure among these 2" in str(none)
