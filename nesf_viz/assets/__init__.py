"""Files shipped inside the package (a small checkpoint trained by this project's CLI)."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

HERE = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = HERE / "synthetic_small.pt"


def default_checkpoint_path() -> Path:
    """The shipped checkpoint (trained on the embedded synthetic data; see README for the command)."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise CheckpointError(
            f"the shipped checkpoint {DEFAULT_CHECKPOINT} is missing; regenerate it with `make checkpoint`"
        )
    return DEFAULT_CHECKPOINT
