import pytest

from nesf_viz.datasets import FILES, DatasetUnavailable, data_root, dataset_path
from nesf_viz.errors import DatasetError


def test_the_data_root_follows_the_environment_and_names_resolve_under_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NESF_VIZ_DATA", str(tmp_path))
    assert data_root() == tmp_path
    with pytest.raises(DatasetUnavailable, match=r"lcs6_test.csv not present .*NESF_VIZ_DATA"):
        dataset_path("lcs6_test")
    (tmp_path / "nesf_paper").mkdir()
    (tmp_path / "nesf_paper" / "lcs6_test.csv").write_text("material_id,cif\n")
    assert dataset_path("lcs6_test") == tmp_path / "nesf_paper" / "lcs6_test.csv"
    assert dataset_path("perov_5_val", must_exist=False) == tmp_path / "cdvae" / "perov_5_val.csv"
    with pytest.raises(DatasetError, match="unknown dataset 'lcs7'"):
        dataset_path("lcs7")


def _write_csv(path, ids):
    import csv

    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["material_id", "cif"], *[[i, nacl.to(fmt="cif")] for i in ids]])


def test_the_protocol_reads_its_datasets_from_the_root_the_environment_names(tmp_path, monkeypatch):
    from nesf_viz.protocol import make_tasks

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
    with pytest.raises(DatasetUnavailable, match="lcs6_test.csv not present"):
        load_crystals("lcs6_test")
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
