"""Named exceptions and warnings. Every user-facing failure says what to fix."""

from __future__ import annotations


class NeSFError(Exception):
    """Base class of every error raised on purpose by nesf_viz."""


class CrystalInputError(NeSFError, ValueError):
    """A crystal given to nesf_viz cannot be used as it is."""


class MalformedCIFError(CrystalInputError):
    """A CIF text (a file or a CSV row) could not be parsed."""


class DisorderedStructureError(CrystalInputError):
    """A structure has partial occupancies or mixed-species sites."""


class EmptyStructureError(CrystalInputError):
    """A structure has no atoms."""


class NonFiniteCoordinatesError(CrystalInputError):
    """A structure has NaN or infinite coordinates or lattice parameters."""


class UnknownSpeciesError(CrystalInputError):
    """An element is not in the model's species vocabulary."""


class DatasetError(NeSFError, ValueError):
    """A dataset path or format is wrong (missing file, missing column, nothing readable)."""


class CheckpointError(NeSFError, ValueError):
    """A checkpoint file is missing, truncated or from an incompatible version."""


class ShapeError(NeSFError, ValueError):
    """A tensor given to a public entry point has the wrong shape."""


class CellTooLargeWarning(UserWarning):
    """A cell extends beyond the bounding box the model was trained on."""


class SkippedStructuresWarning(UserWarning):
    """Some structures were skipped while reading (on_error='skip')."""


class ConfigError(NeSFError, ValueError):
    """A configuration value that cannot work (the message names the field and what to give)."""


class DeviceError(NeSFError, ValueError):
    """A device that this machine does not have (e.g. 'cuda' without a GPU torch can see)."""


class LatticeClampedWarning(UserWarning):
    """A predicted lattice outside the physical range was clamped into it before decoding."""


class DecodeMemoryError(NeSFError, MemoryError):
    """A decode would hold more particles than `DecodeConfig.max_particles` allows."""


class OutputError(NeSFError, ValueError):
    """An output path that cannot be used as given: it is or holds an input, it already holds
    results (and neither overwrite nor append was asked), or another process is writing it."""


class TrainingError(NeSFError, RuntimeError):
    """A training run that ended without a usable result (e.g. no checkpoint written)."""


class NonFiniteLossError(TrainingError, ArithmeticError):
    """The training loss became NaN or infinite: training stopped at once; the last good
    checkpoint is kept and nothing of the diverged epoch is written."""


def require_finite_fields(config) -> None:
    """`ConfigError` for the first float field of a config dataclass that is NaN or infinite (an
    infinite learning rate or weight trains NaN, an infinite warm-up keeps the rate at 0)."""
    import dataclasses
    import math

    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{f.name} must be a finite number, got {v!r}")
