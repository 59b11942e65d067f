"""Checkpoints shipped inside the package, trained by this project's CLI (README, 'Shipped models').

`CHECKPOINTS` lists them by name with what they were trained on, the command that made them
and the metrics they reach on a held-out split (tests/test_assets.py checks those metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ShippedCheckpoint:
    """One shipped model: its file, provenance and the metrics it was shipped with."""

    name: str
    filename: str
    dataset: str
    """The `nesf-viz benchmark` dataset it was trained and evaluated on (its held-out split)."""
    trained_on: str
    """Training data (and its source and licence for real data)."""
    command: str
    """The CLI commands that made the file."""
    evaluated_on: str
    metrics: dict = field(default_factory=dict)
    """Measured with the fast decoder on `evaluated_on` (the README quotes these)."""
    bounds: dict = field(default_factory=dict)
    """What tests/test_assets.py asserts on the first 48 held-out crystals (upper bounds; a
    lower bound for match_rate_pct): the stated metrics with the margin a slice needs."""

    @property
    def path(self) -> Path:
        return HERE / self.filename


CHECKPOINTS: dict[str, ShippedCheckpoint] = {
    c.name: c
    for c in (
        ShippedCheckpoint(
            name="synthetic",
            filename="synthetic_quick.pt",
            dataset="synthetic",
            trained_on="the embedded cubic prototypes (nesf_viz.synthetic), train split (1920 crystals)",
            command="make checkpoint (nesf-viz benchmark --datasets synthetic --recipe quick --epochs 50 "
                    "--max-minutes 10 --decode fast --probe-minutes 1 --seeds 0 --out out/tta-synthetic, then "
                    "nesf-viz export --checkpoint out/tta-synthetic/runs/quick/synthetic/seed0/best.pt "
                    "--out nesf_viz/assets/synthetic_quick.pt)",
            evaluated_on="embedded test split (240 crystals)",
            metrics={"epochs": 50, "train_minutes": 8.4, "atom_count_error_pct": 0.0,
                     "position_error_actual_A": 0.0294, "species_error_actual_pct": 0.0,
                     "length_mae_A": 0.0357, "angle_mae_deg": 0.866, "match_rate_pct": 100.0,
                     "match_rmse": 0.0113},
            bounds={"atom_count_error_pct": 0.0, "species_error_actual_pct": 1.0, "match_rate_pct": 95.0,
                    "position_error_actual_A": 0.06},
        ),
        ShippedCheckpoint(
            name="lcs6",
            filename="lcs6_quick.pt",
            dataset="lcs6",
            trained_on="LCS6Å train split of the NeSF paper (5418 Materials Project structures, conventional cells "
                       "<= 6 Å, 1-28 atoms, 80 elements; Materials Project data, CC BY 4.0; split as published "
                       "with the authors' MIT-licensed code)",
            command="python benchmarks/time_to_accuracy.py --dataset lcs6 --minutes 60 --variants quick "
                    "--quick-epochs 149 --probe-minutes 5 --out out/tta-lcs6 (= nesf-viz benchmark --datasets lcs6 "
                    "--recipe quick --epochs 149 --max-minutes 60 --decode fast --probe-minutes 5 --seeds 0 "
                    "--out out/tta-lcs6), then nesf-viz export --checkpoint "
                    "out/tta-lcs6/runs/quick/lcs6/seed0/best.pt --out nesf_viz/assets/lcs6_quick.pt",
            evaluated_on="LCS6Å test split (301 crystals)",
            metrics={"epochs": 149, "train_minutes": 57.7, "atom_count_error_pct": 9.97,
                     "position_error_actual_A": 0.169, "position_error_detected_A": 0.111,
                     "species_error_actual_pct": 8.06, "length_mae_A": 0.060, "angle_mae_deg": 0.60,
                     "match_rate_pct": 78.7, "match_rmse": 0.0127},
            bounds={"atom_count_error_pct": 25.0, "species_error_actual_pct": 15.0, "match_rate_pct": 60.0,
                    "position_error_actual_A": 0.3},
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
