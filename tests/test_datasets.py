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


def test_the_protocol_and_the_tests_use_the_same_root():
    from nesf_viz.protocol import default_data_root

    from .conftest import SHARED_DATA

    assert default_data_root() == data_root() == SHARED_DATA
    assert set(FILES) >= {"lcs6_train", "lcs6_val", "lcs6_test", "icsg3d_val", "perov_5_val", "carbon_24_val"}


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
