"""nesf_viz.survey: a dataset encoded, decoded and judged once, cached by content; what the explorer
looks up (quantities, neighbours, search, worst decodes) and how a selection is written out."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nesf_viz.crystal import Crystal
from nesf_viz.data import load_crystals
from nesf_viz.errors import OutputError, UnknownSpeciesError

S = importlib.import_module("nesf_viz.survey")  # the module: `nesf_viz.survey` the attribute is the function


@pytest.fixture(scope="module")
def crystals():
    return load_crystals("synthetic:120", "test")  # 12 cubic crystals of 8 prototypes


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("survey-cache")


@pytest.fixture(scope="module")
def made(crystals, cache):
    return S.survey(crystals, "synthetic", cache_dir=cache, progress=False)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_survey_holds_one_entry_per_crystal_and_says_how_right(made, crystals):
    B = len(crystals)
    assert len(made) == B and not made.skipped and not made.from_cache
    assert made.latents.shape == (B, made.checkpoint.model_config.latent_dim)
    assert len(made.decoded) == B and len(made.verdicts) == B and made.spacegroups.shape == (B,)
    assert [v.id for v in made.verdicts] == [c.id for c in crystals] == list(made.decoded.ids)
    # the latents are the model's own
    from nesf_viz.data import CrystalBatch

    with torch.no_grad():
        z = made.checkpoint.model.latents(CrystalBatch.from_crystals(crystals, made.checkpoint.vocab))
    np.testing.assert_allclose(made.latents, z.numpy(), rtol=1e-5, atol=1e-6)
    # symmetry of the embedded cubic prototypes: cubic groups only
    assert set(S.crystal_system(int(g)) for g in made.spacegroups) == {"cubic"}
    assert all(v.matched is not None for v in made.verdicts)  # StructureMatcher ran
    text = made.summary()
    assert f"/{B} decoded right" in text and "StructureMatcher" in text and "coarse decoder" in text


def test_the_second_call_reads_the_cache_and_decodes_nothing(made, crystals, cache, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("decoded although the survey is cached")

    monkeypatch.setattr(S, "decode_crystals", refuse)
    again = S.survey(crystals, "synthetic", cache_dir=cache, progress=False)
    assert again.from_cache and again.cache_path == made.cache_path and again.cache_path.parent == cache
    assert again.cache_path.name.startswith("survey-") and again.cache_path.suffix == ".npz"
    np.testing.assert_array_equal(again.latents, made.latents)
    np.testing.assert_array_equal(again.spacegroups, made.spacegroups)
    assert again.verdicts == made.verdicts
    for a, b in zip(again.decoded.positions_angstrom, made.decoded.positions_angstrom):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.decoded.lengths_angstrom, made.decoded.lengths_angstrom)
    assert again.decoded.atomic_numbers[0].tolist() == made.decoded.atomic_numbers[0].tolist()
    for a, b in zip(again.crystals, made.crystals):
        assert a.id == b.id and a.properties == b.properties
        np.testing.assert_array_equal(a.positions_angstrom, b.positions_angstrom)
    # another decoder, other data, no cache: each is a miss (and so decodes)
    with pytest.raises(AssertionError, match="decoded although"):
        S.survey(crystals, "synthetic", decoder="fast", cache_dir=cache, progress=False)
    with pytest.raises(AssertionError, match="decoded although"):
        S.survey(crystals[:5], "synthetic", cache_dir=cache, progress=False)
    with pytest.raises(AssertionError, match="decoded although"):
        S.survey(crystals, "synthetic", cache=False, progress=False)


def test_the_cache_key_follows_the_content_not_the_object(crystals):
    moved = [dataclasses.replace(crystals[0], positions_angstrom=crystals[0].positions_angstrom + 1e-9), *crystals[1:]]
    assert S._crystals_digest(crystals) == S._crystals_digest(list(crystals))
    assert S._crystals_digest(moved) != S._crystals_digest(crystals)
    renamed = [dataclasses.replace(crystals[0], id="other"), *crystals[1:]]
    assert S._crystals_digest(renamed) != S._crystals_digest(crystals)


def test_a_changed_weight_changes_the_model_digest(made):
    ck = made.checkpoint
    before = S._checkpoint_digest(ck)
    p = next(ck.model.parameters())
    with torch.no_grad():
        p.view(-1)[0] += 1e-3
    try:
        assert S._checkpoint_digest(ck) != before
    finally:
        with torch.no_grad():
            p.view(-1)[0] -= 1e-3


def _write_csv(path: Path, crystals, extra=None) -> Path:
    from pymatgen.io.cif import CifWriter

    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "band_gap", "cif"])
        for k, c in enumerate(crystals):
            w.writerow([c.id, (extra or {}).get(c.id, f"{0.5 * k:.2f}"), str(CifWriter(c.to_structure()))])
    return path


def test_a_file_is_keyed_by_its_bytes_and_not_read_again_on_a_hit(crystals, tmp_path, monkeypatch):
    data = _write_csv(tmp_path / "mine.csv", crystals[:4])
    first = S.survey(data, "synthetic", cache_dir=tmp_path / "c", progress=False)
    assert first.source_path == data and not first.from_cache
    props = first.quantities["property: band_gap"]
    assert not props.categorical and props.values.tolist() == [0.0, 0.5, 1.0, 1.5]

    def refuse(*a, **k):
        raise AssertionError("read again although cached")

    monkeypatch.setattr(S, "load_crystals", refuse)
    hit = S.survey(data, "synthetic", cache_dir=tmp_path / "c", progress=False)
    assert hit.from_cache and hit.quantities["property: band_gap"].values.tolist() == [0.0, 0.5, 1.0, 1.5]
    _write_csv(data, crystals[:4], extra={crystals[0].id: "9.9"})  # one value changed: a miss
    with pytest.raises(AssertionError, match="read again"):
        S.survey(data, "synthetic", cache_dir=tmp_path / "c", progress=False)


def test_an_unreadable_cache_file_is_computed_again(crystals, tmp_path, caplog):
    s = S.survey(crystals[:3], "synthetic", cache_dir=tmp_path, progress=False)
    s.cache_path.write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING, logger="nesf_viz.survey"):
        again = S.survey(crystals[:3], "synthetic", cache_dir=tmp_path, progress=False)
    assert not again.from_cache and "unreadable" in caplog.text
    assert S.survey(crystals[:3], "synthetic", cache_dir=tmp_path, progress=False).from_cache  # rewritten whole
    assert [p.name for p in tmp_path.iterdir()] == [s.cache_path.name]  # no temp file left


def test_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("NESF_VIZ_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert S.cache_folder() == tmp_path / ".cache" / "nesf_viz" / "survey"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert S.cache_folder() == tmp_path / "xdg" / "nesf_viz" / "survey"
    monkeypatch.setenv("NESF_VIZ_CACHE", str(tmp_path / "mine"))
    assert S.cache_folder() == tmp_path / "mine" / "survey"
    assert S.cache_folder(tmp_path / "given") == tmp_path / "given"


def test_unknown_elements_fail_with_the_fix_or_are_skipped_and_counted(crystals, tmp_path):
    odd = Crystal(np.zeros((1, 3)), np.array([92]), (4.0, 4.0, 4.0), (90.0, 90.0, 90.0), id="uranium")
    with pytest.raises(UnknownSpeciesError, match="U in 'uranium'.*skip_bad=True"):
        S.survey([*crystals[:3], odd], "synthetic", cache_dir=tmp_path, progress=False)
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        s = S.survey([*crystals[:3], odd], "synthetic", cache_dir=tmp_path, skip_bad=True, progress=False)
    assert len(s) == 3 and s.skipped == ("uranium",) and "1 skipped" in s.summary()
    assert S.survey([*crystals[:3], odd], "synthetic", cache_dir=tmp_path, skip_bad=True,
                    progress=False).skipped == ("uranium",)  # from the cache too


def test_nearest_neighbours_match_a_plain_numpy_search(made):
    z = made.latents.astype(np.float64)
    for i in range(len(made)):
        idx, dist = made.nearest(i, k=4)
        ref = [j for j in np.argsort([np.linalg.norm(z[j] - z[i]) if j != i else np.inf for j in range(len(z))],
                                     kind="stable")[:4]]
        assert idx.tolist() == ref and i not in idx.tolist()
        np.testing.assert_allclose(dist, [np.linalg.norm(z[j] - z[i]) for j in ref])
        assert (np.diff(dist) >= 0).all()
    assert len(made.nearest(0, k=100)[0]) == len(made) - 1
    with pytest.raises(IndexError):
        made.nearest(len(made))


def test_quantities_have_one_value_per_crystal_and_mean_what_they_say(made):
    B = len(made)
    q = made.quantities
    for name, quantity in q.items():
        assert quantity.values.shape == (B,), name
        if quantity.categorical:
            assert quantity.values.min() >= 0 and quantity.values.max() < len(quantity.categories), name
    verdict = q["decoded right / wrong"]
    assert [verdict.categories[k] == "right" for k in verdict.values] == made.right.tolist()
    assert q["position error (Å)"].values.tolist() == [v.position_error_A for v in made.verdicts]
    assert q["atoms (true)"].values.tolist() == [c.num_atoms for c in made.crystals]
    vol = [abs(np.linalg.det(c.lattice)) for c in made.crystals]
    np.testing.assert_allclose(q["cell volume (Å³)"].values, vol)
    assert q["property: prototype"].categorical  # a text column with few values: categorical
    assert "property: formula" not in q  # formulas and ids are not quantities
    na = made.element_quantity("Na")
    has = [bool((c.atomic_numbers == 11).any()) for c in made.crystals]
    assert [na.categories[k] == "with Na" for k in na.values] == has
    assert q["crystal system"].text(0) == "cubic"
    assert [S.crystal_system(n) for n in (0, 1, 2, 3, 15, 16, 75, 143, 168, 195, 230)] == [
        "?", "triclinic", "triclinic", "monoclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal",
        "hexagonal", "cubic", "cubic"]


def test_find_and_worst(made):
    i = 3
    assert made.find(made.ids[i])[0] == i
    formula = made.formulas[i]
    found = made.find(formula.lower())
    assert found and all(made.formulas[j] == formula for j in found[: made.formulas.count(formula)])
    assert made.find("  ") == [] and made.find("no such crystal") == []
    order = made.worst("position error (Å)", n=len(made))
    errs = [made.verdicts[j].position_error_A for j in order]
    assert errs == sorted(errs, reverse=True) and sorted(order) == list(range(len(made)))
    with pytest.raises(ValueError, match="categorical"):
        made.worst("crystal system")


def test_export_writes_only_inside_the_folder_with_safe_names(crystals, tmp_path):
    hostile = ["../escape", "a/b\\c", "CON", "dots..", "x\x00y", "../escape"]  # the last one repeats
    ids_given = [dataclasses.replace(c, id=h) for c, h in zip(crystals, hostile)]
    s = S.survey(ids_given, "synthetic", cache_dir=tmp_path / "cache", progress=False)
    out = tmp_path / "sel"
    before = set(_files(tmp_path))
    path = s.export(range(len(s)), out)
    written = set(_files(tmp_path)) - before
    assert written and all(out in p.parents for p in written)  # nothing outside the folder
    for p in written:
        assert ".." not in p.name and "\x00" not in p.name and "/" not in p.name
        assert p.parent in (out, out / "decoded", out / "original")
    assert path == out / "selection.csv"
    rows = list(csv.DictReader(path.open()))
    assert [r["id"] for r in rows] == hostile
    cifs = [r["decoded_cif"] for r in rows]
    assert len(set(cifs)) == len(cifs) and all((out / c).is_file() for c in cifs)  # the repeated id: its own file
    assert all((out / r["original_cif"]).is_file() for r in rows)
    assert rows[0]["position_error_A"] and rows[0]["right"] in ("True", "False")
    from pymatgen.core import Structure

    assert Structure.from_file(str(out / rows[1]["original_cif"])).composition.reduced_formula == s.formulas[1]
    # a second export into the same folder: refused unless overwrite, which replaces it
    with pytest.raises(OutputError, match="already holds an export"):
        s.export([0], out)
    s.export([0, 1], out, overwrite=True)
    assert len(list(csv.DictReader((out / "selection.csv").open()))) == 2
    assert len(list((out / "decoded").glob("*.cif"))) == 2
    with pytest.raises(OutputError, match="nothing selected"):
        s.export([], tmp_path / "empty")


def test_export_refuses_a_folder_that_holds_the_data(crystals, tmp_path):
    (tmp_path / "data").mkdir()
    data = _write_csv(tmp_path / "data" / "mine.csv", crystals[:2])
    s = S.survey(data, "synthetic", cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(OutputError, match="holds an input"):
        s.export([0], tmp_path / "data")
    assert sorted(os.listdir(tmp_path / "data")) == ["mine.csv"]
