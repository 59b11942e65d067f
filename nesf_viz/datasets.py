"""Where the real datasets live, by name: one registry instead of paths spelled out per module.

The files live in `../shared/data` beside the checkout (its README says where they come from), or
wherever `$NESF_VIZ_DATA` points. One is also part of the package: the LCS6Å test split (301
Materials Project structures, CC BY 4.0; `nesf_viz/sample_data/`, attribution in its
ATTRIBUTION.md), read when the data root lacks it, so that the notebooks show real crystals on a
fresh machine. Code that needs a dataset asks `dataset_path(name)` and skips with
`DatasetUnavailable`'s reason when it is absent (`nesf_viz.evaluate.held_out_crystals(model)`
gives the test crystals a shipped model never saw).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetError

FILES: dict[str, str] = {
    "lcs6_train": "nesf_paper/lcs6_train.csv",
    "lcs6_val": "nesf_paper/lcs6_val.csv",
    "lcs6_test": "nesf_paper/lcs6_test.csv",
    "icsg3d_train_recovered": "nesf_paper/icsg3d_train_recovered.csv",
    "icsg3d_val": "nesf_paper/icsg3d_val.csv",
    "ybco13": "nesf_paper/ybco13",
    "perov_5_val": "cdvae/perov_5_val.csv",
    "carbon_24_val": "cdvae/carbon_24_val.csv",
}
"""Name -> path under the data root. The shared CSVs hold conventional cells in the project
frame already: read them with `conventional=False`."""


SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data"
"""The package's own copy of the datasets in `PACKAGED` (and their ATTRIBUTION.md)."""

PACKAGED: dict[str, str] = {"lcs6_test": "lcs6_test.csv"}
"""Name -> file under `SAMPLE_DATA`: the datasets the package carries, read when the data root
lacks them (the same bytes as the shared file)."""


class DatasetUnavailable(DatasetError):
    """A named dataset whose file is not present (benchmarks and tests skip with this reason)."""


def data_root() -> Path:
    """``$NESF_VIZ_DATA``, else ``shared/data`` beside the project checkout."""
    env = os.environ.get("NESF_VIZ_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def dataset_path(name: str, root: str | Path | None = None, must_exist: bool = True) -> Path:
    """The file (or folder) of a named dataset: under the data root when there, else the package's
    copy for a dataset in `PACKAGED`; else `DatasetUnavailable` saying where it was looked for
    (or, with must_exist=False, the path under the data root)."""
    if name not in FILES:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(FILES)}")
    path = Path(root or data_root()) / FILES[name]
    if not path.exists() and name in PACKAGED:
        return SAMPLE_DATA / PACKAGED[name]
    if must_exist and not path.exists():
        raise DatasetUnavailable(f"{path} not present (real datasets live in ../shared/data beside the "
                                 "checkout, or set $NESF_VIZ_DATA)")
    return path
