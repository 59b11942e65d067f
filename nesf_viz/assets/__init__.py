"""Checkpoints shipped inside the package, trained by this project's CLI.

Each model is two files: `<name>.pt` (the slim checkpoint) and `<name>.json`, its record as
measured by the run that made it (held-out metrics, training time and machine, the
time-to-accuracy curve, the command), written by `benchmarks/ship_model.py` from the run's
`results.json`. `CHECKPOINTS` lists them by name; tests/test_assets.py decodes a slice of each
model's held-out split again and checks it reaches its `bounds`.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError

HERE = Path(__file__).resolve().parent

RECORD_METRICS = ("atom_count_error_pct", "position_error_actual_A", "position_error_detected_A",
                  "species_error_actual_pct", "species_error_detected_pct", "length_mae_A", "angle_mae_deg",
                  "match_rate_pct", "match_rmse", "n_no_atoms", "spacegroup_recovery_pct",
                  "symmetrized_match_rate_pct", "symmetrized_match_rmse", "symmetrized_position_error_actual_A",
                  "symmetrized_spacegroup_recovery_pct")
"""The metrics of a benchmark row a shipped record keeps (see `metrics.ReconstructionMetrics`)."""


@dataclass(frozen=True)
class ShippedCheckpoint:
    """One shipped model: its files, what it is for, and what tests/test_assets.py asserts."""

    name: str
    dataset: str
    """The `nesf-viz benchmark` dataset it was trained and evaluated on (its held-out split)."""
    data_source: str
    """Where its training data come from, and their licence."""
    bounds: dict = field(default_factory=dict)
    """What tests/test_assets.py asserts on the first 48 held-out crystals (upper bounds; a
    lower bound for match_rate_pct): the recorded metrics with the margin a slice needs."""

    @property
    def path(self) -> Path:
        return HERE / f"{self.name}.pt"

    @property
    def record(self) -> dict:
        """The measured record (`<name>.json`)."""
        return _read_record(self.name)

    @property
    def metrics(self) -> dict:
        """Held-out metrics as measured by the run that made it (decoder: `record['decoder']`)."""
        return self.record["metrics"]

    @property
    def command(self) -> str:
        return self.record["training"]["command"]


@functools.cache
def _read_record(name: str) -> dict:
    path = HERE / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"the record of the shipped model {name!r} ({path}) cannot be read ({exc}); "
                              "regenerate it with benchmarks/ship_model.py") from exc


MP_LICENCE = "Materials Project data, CC BY 4.0"
CDVAE_SPLIT = ("the CDVAE benchmark's validation file (MIT-licensed split) divided 80/10/10 with a fixed "
               "permutation (nesf_viz.experiment.make_tasks)")
CHECKPOINTS: dict[str, ShippedCheckpoint] = {
    c.name: c
    for c in (
        ShippedCheckpoint(
            name="synthetic", dataset="synthetic",
            data_source="the embedded cubic prototypes (nesf_viz.synthetic), made in code",
            bounds={"atom_count_error_pct": 0.0, "species_error_actual_pct": 1.0, "match_rate_pct": 95.0,
                    "position_error_actual_A": 0.06},
        ),
        ShippedCheckpoint(
            name="lcs6", dataset="lcs6",
            data_source="LCS6Å split of the NeSF paper (conventional cells <= 6 Å, 1-28 atoms, 80 elements; "
                        f"{MP_LICENCE}; split as published with the authors' MIT-licensed code)",
            bounds={"atom_count_error_pct": 25.0, "species_error_actual_pct": 15.0, "match_rate_pct": 60.0,
                    "position_error_actual_A": 0.3},
        ),
        ShippedCheckpoint(
            name="perov5", dataset="perov_5",
            data_source="perov_5 (ABX3 perovskites, 5 atoms, 56 elements; Castelli et al. 2012, Computational "
                        f"Materials Repository), {CDVAE_SPLIT}",
            bounds={"atom_count_error_pct": 0.0, "species_error_actual_pct": 1.0, "match_rate_pct": 97.0,
                    "position_error_actual_A": 0.04, "match_rmse": 0.02},
        ),
        ShippedCheckpoint(
            name="carbon24", dataset="carbon_24",
            data_source="carbon_24 (carbon allotropes, 6-24 atoms; Pickard 2020, AIRSS structures of carbon at "
                        f"10 GPa, Materials Cloud, CC BY 4.0), {CDVAE_SPLIT}",
            # far from the target (docs: recipes); the bounds still tell this model from an untrained one
            # (its first-epoch snapshot: 91 % wrong atom counts, 2.1 Å, match 0.5 %)
            bounds={"atom_count_error_pct": 90.0, "match_rate_pct": 6.0, "position_error_actual_A": 0.9,
                    "length_mae_A": 0.2},
        ),
    )
}
DEFAULT = "synthetic"


def checkpoint_path(name: str = DEFAULT) -> Path:
    """Path of a shipped checkpoint by name (see `CHECKPOINTS`)."""
    if name not in CHECKPOINTS:
        raise CheckpointError(f"no shipped checkpoint named {name!r}; shipped: {', '.join(CHECKPOINTS)}")
    path = CHECKPOINTS[name].path
    if not path.is_file():
        raise CheckpointError(f"the shipped checkpoint {path} is missing; regenerate it with: "
                              f"{CHECKPOINTS[name].command}")
    return path


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint path as given, or a shipped model's path when no such file or folder exists."""
    if Path(name_or_path).exists() or str(name_or_path) not in CHECKPOINTS:
        return Path(name_or_path)
    return checkpoint_path(str(name_or_path))


def default_checkpoint_path() -> Path:
    """The shipped checkpoint the notebooks and the demo show (trained on the embedded data)."""
    return checkpoint_path(DEFAULT)


def _finite_or_none(v):
    return v if not isinstance(v, float) or math.isfinite(v) else None


def record_of_run(row: dict, *, name: str, checkpoint_train_config: dict, command: str | None = None,
                  continues: dict | None = None) -> dict:
    """A shipped model's record from its `nesf-viz benchmark` row (results.json). `command`
    overrides the row's own (rows written before commands were recorded); `continues`: the
    record of the shipped model this run was warm-started from (its training is counted)."""
    cpu = row.get("history", {}).get("cpu_seconds")
    precision = "bf16" if checkpoint_train_config.get("mixed_precision") is True else "float32"
    training = {
        "recipe": row["recipe"], "epochs": row["epochs"], "best_epoch": row.get("best_epoch"),
        "train_minutes": row["train_minutes"], "cpu_minutes": sum(cpu) / 60 if cpu else None,
        "device": row["device"], "precision": precision, "torch": row.get("torch"),
        "command": command or row.get("command"), "n_train": row["n_train"],
    }
    if continues is not None:
        training["continues"] = {"name": continues["name"], **continues["training"]}
    return {
        "name": name, "dataset": row["dataset"], "trained_on": row["training_set"],
        "evaluated_on": f"{row['test_set']} ({row['n_test_evaluated']} crystals)",
        "decoder": row["decode"],
        "metrics": {k: _finite_or_none(row[k]) for k in RECORD_METRICS if k in row},
        "training": training,
        "curve": [{k: _finite_or_none(v) for k, v in p.items()} for p in row.get("curve", [])],
    }
