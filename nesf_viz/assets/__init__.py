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
    trained_on: str
    """Training data (and its source and licence for real data)."""
    command: str
    """The CLI commands that made the file."""
    evaluated_on: str
    metrics: dict = field(default_factory=dict)
    """Measured with the fast decoder on `evaluated_on` (README and tests quote these)."""

    @property
    def path(self) -> Path:
        return HERE / self.filename


CHECKPOINTS: dict[str, ShippedCheckpoint] = {
    c.name: c
    for c in (
        ShippedCheckpoint(
            name="synthetic",
            filename="synthetic_quick.pt",
            trained_on="the embedded cubic prototypes (nesf_viz.synthetic), train split (1920 crystals)",
            command="nesf-viz train --train synthetic --val synthetic --out runs/ship-synthetic --recipe quick "
                    "--epochs 50 --seed 0 && nesf-viz export --checkpoint runs/ship-synthetic/last.pt "
                    "--out nesf_viz/assets/synthetic_quick.pt",
            evaluated_on="embedded test split (240 crystals)",
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


def default_checkpoint_path() -> Path:
    """The shipped checkpoint the notebooks and the demo show (trained on the embedded data)."""
    return checkpoint_path(DEFAULT)
