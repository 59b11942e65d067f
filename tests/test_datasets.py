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
