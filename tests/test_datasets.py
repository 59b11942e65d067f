import hashlib
from pathlib import Path

import pytest
import tomllib

from nesf_viz.datasets import (
    FILES,
    PACKAGED,
    SAMPLE_DATA,
    DatasetUnavailable,
    data_root,
    dataset_path,
)
from nesf_viz.errors import DatasetError
from nesf_viz.evaluate import held_out_crystals

from .conftest import shared_data


def test_the_data_root_follows_the_environment_and_names_resolve_under_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NESF_VIZ_DATA", str(tmp_path))
    assert data_root() == tmp_path
    with pytest.raises(DatasetUnavailable, match=r"lcs6_val.csv not present .*NESF_VIZ_DATA"):
        dataset_path("lcs6_val")
    (tmp_path / "nesf_paper").mkdir()
    (tmp_path / "nesf_paper" / "lcs6_val.csv").write_text("material_id,cif\n")
    assert dataset_path("lcs6_val") == tmp_path / "nesf_paper" / "lcs6_val.csv"
    assert dataset_path("perov_5_val", must_exist=False) == tmp_path / "cdvae" / "perov_5_val.csv"
    with pytest.raises(DatasetError, match="unknown dataset 'lcs7'"):
        dataset_path("lcs7")


def test_the_lcs6_test_split_ships_with_the_package_and_the_data_root_wins_when_it_has_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NESF_VIZ_DATA", str(tmp_path))  # an empty data root: a fresh machine
    packaged = SAMPLE_DATA / "lcs6_test.csv"
    assert dataset_path("lcs6_test") == packaged and set(PACKAGED) == {"lcs6_test"}
    attribution = (SAMPLE_DATA / "ATTRIBUTION.md").read_text()
    for words in ("Materials Project", "CC BY 4.0", "MIT", hashlib.sha256(packaged.read_bytes()).hexdigest()):
        assert words in attribution, words
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert {"sample_data/*.csv", "sample_data/*.md"} <= set(pyproject["tool"]["setuptools"]["package-data"]["nesf_viz"])
    from nesf_viz.data import load_crystals

    crystals = load_crystals("lcs6_test")
    assert len(crystals) == 301 and crystals[0].id == "mp-1008986" and crystals[0].num_atoms == 8  # as given
    assert [c.id for c in held_out_crystals("lcs6", limit=3)] == [c.id for c in crystals[:3]]
    (tmp_path / "nesf_paper").mkdir()
    (tmp_path / "nesf_paper" / "lcs6_test.csv").write_text("material_id,cif\n")
    assert dataset_path("lcs6_test") == tmp_path / "nesf_paper" / "lcs6_test.csv"  # the data root's copy wins


def test_the_packaged_lcs6_test_split_is_the_shared_file_byte_for_byte():
    shared = shared_data(FILES["lcs6_test"])
    assert (SAMPLE_DATA / "lcs6_test.csv").read_bytes() == shared.read_bytes()


def test_held_out_crystals_of_the_shipped_models():
    from nesf_viz.data import load_crystals

    got, want = held_out_crystals("synthetic", limit=4), load_crystals("synthetic", "test")[:4]
    assert [c.id for c in got] == [c.id for c in want] and len(got) == 4
    with pytest.raises(DatasetError, match="no shipped model named 'lcs7'; shipped: synthetic, lcs6"):
        held_out_crystals("lcs7")


def _write_csv(path, ids):
    import csv

    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["material_id", "cif"], *[[i, nacl.to(fmt="cif")] for i in ids]])


def test_the_protocol_reads_its_datasets_from_the_root_the_environment_names(tmp_path, monkeypatch):
    from nesf_viz.experiment import make_tasks

    monkeypatch.setenv("NESF_VIZ_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match=str(tmp_path)):
        make_tasks("lcs6")  # nothing there yet: the error names where it looked
    for split, ids in (("train", ["t1", "t2"]), ("val", ["v1"]), ("test", ["x1"])):
        _write_csv(tmp_path / FILES[f"lcs6_{split}"], ids)
    task = make_tasks("lcs6")[0]
    assert [c.id for c in task.train] == ["t1", "t2"] and [c.id for c in task.test] == ["x1"]
    assert task.test[0].num_atoms == 2  # the shared files' cells are kept as given


def test_load_crystals_takes_dataset_names(tmp_path, monkeypatch):
    import csv

    from pymatgen.core import Lattice, Structure

    from nesf_viz.data import load_crystals

    monkeypatch.setenv("NESF_VIZ_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="lcs6_val.csv not present"):
        load_crystals("lcs6_val")
    (tmp_path / "nesf_paper").mkdir()
    # a primitive rock-salt cell: conventional=True would make it the 8-atom cube; a named
    # dataset is read as given (the shared files hold conventional cells already)
    nacl = Structure(Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    with (tmp_path / "nesf_paper" / "lcs6_test.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["material_id", "cif"], ["x1", nacl.to(fmt="cif")]])
    got = load_crystals("lcs6_test")
    assert [c.id for c in got] == ["x1"] and got[0].num_atoms == 2
    assert load_crystals(tmp_path / "nesf_paper" / "lcs6_test.csv")[0].num_atoms == 8  # a path: conventional
    with pytest.raises(DatasetError, match="dataset name such as 'lcs6_test'"):
        load_crystals("lcs7_test")
