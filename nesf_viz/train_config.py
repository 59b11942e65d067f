"""Training configuration: `TrainConfig` (defaults are the paper's) and its named recipes.

One preset mechanism: a recipe is a `TrainConfig` classmethod listed in `RECIPES` (the CLI's and
the experiment's `--recipe` names); `make_train_config` puts single options on top of one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import ConfigError, require_finite_fields
from .sampling import SamplingConfig

__all__ = ["TrainConfig", "QUICK_INGREDIENTS", "RECIPES", "make_train_config", "resumed_config"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Defaults are the paper's."""

    epochs: int = 3200
    batch_size: int = 128
    """Crystals per step (the paper: 128; the reference config: 64)."""
    learning_rate: float = 1e-3
    """Adam's (peak) learning rate."""
    lr_schedule: str = "step"
    """'step': halved every `lr_halving_epochs` (paper). 'cosine' (option): linear warm-up over
    `warmup_epochs`, then a cosine decay to `final_lr_fraction` of the peak at `epochs`, updated
    every step; choose `epochs` to fit the budget (the schedule follows epochs, not minutes, so
    a run is reproducible and resumable)."""
    lr_halving_epochs: int = 640
    """Adam's learning rate is halved every this many epochs ('step' schedule)."""
    warmup_epochs: float = 0.0
    """'cosine' schedule: linear warm-up from 0 over this many epochs (fractions allowed)."""
    final_lr_fraction: float = 0.01
    """'cosine' schedule: the learning rate at the last epoch, as a fraction of the peak."""
    position_loss_weight: float = 10.0
    species_loss_weight: float = 0.1
    """The paper's 0.1 leaves the species term ~100x below the position term: species are
    learned last (the quick recipe uses 1.0)."""
    length_loss_weight: float = 1.0
    angle_loss_weight: float = 1.0
    kl_loss_weight: float = 0.001
    """Only used with a VAE latent."""
    early_stopping_patience_epochs: int | None = 400
    """Stop when the validation loss has not improved for this many epochs (None: never)."""
    seed: int = 0
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ..."""
    max_minutes: float | None = None
    """Wall-clock budget; training stops at the last epoch that fits."""
    periodic_targets: bool = False
    """Minimum-image ground truth (named option; the paper's fields are not periodic)."""
    mixed_precision: bool | str = False
    """Option: bfloat16 autocast for the forward pass. Faster per step than float32 where the
    hardware runs bf16 natively (CUDA, a CPU with AVX512-BF16 or AMX) with the same validation loss
    per epoch, but *slower* than float32 where torch emulates it (docs: recipes). 'auto' = bf16
    where the hardware has it (`native_bf16`), resolved when training starts and recorded resolved
    in the checkpoint. Off by default (the paper trains in float32)."""
    encoder_dropout: float | None = None
    """Option: overrides the network's encoder dropout (paper 0.3; it acts only in training,
    so it is a training choice; the checkpoint's network config records the value used)."""
    augment_origin_shift: bool = False
    """Option: every step moves each training crystal's origin by a random fractional vector and
    wraps its atoms back into the cell (`augment.shift_origin`: the same crystal, another view).
    The training box then covers whole cells. Off in the paper."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        require_finite_fields(self)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be an integer from 0 to {2**32 - 1}, got {self.seed!r}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr_halving_epochs": self.lr_halving_epochs}
        for name, v in positive.items():
            if not v > 0:
                raise ConfigError(f"{name} must be > 0, got {v!r}")
        if not self.learning_rate >= 0:
            raise ConfigError(f"learning_rate must be >= 0, got {self.learning_rate!r}")
        if self.lr_schedule not in ("step", "cosine"):
            raise ConfigError(f"lr_schedule must be 'step' or 'cosine', got {self.lr_schedule!r}")
        if self.warmup_epochs < 0 or not 0 <= self.final_lr_fraction <= 1:
            raise ConfigError(f"warmup_epochs must be >= 0 and final_lr_fraction in [0, 1], got "
                              f"{self.warmup_epochs!r}, {self.final_lr_fraction!r}")
        if self.encoder_dropout is not None and not 0 <= self.encoder_dropout < 1:
            raise ConfigError(f"encoder_dropout must be in [0, 1), got {self.encoder_dropout!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be > 0 (or None: no budget), got {self.max_minutes!r}")
        if self.mixed_precision not in (True, False, "auto"):
            raise ConfigError(f"mixed_precision must be True, False or 'auto', got {self.mixed_precision!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["sampling"] = SamplingConfig(**d.get("sampling", {}))
        return cls(**d)

    # --- recipes: the one preset mechanism (the CLI's and the protocol's --recipe names)
    @classmethod
    def paper(cls, **overrides) -> "TrainConfig":
        """The paper: float32, batch 128, Adam 1e-3 halved every 640 epochs, 3200 epochs."""
        return cls(**overrides)

    @classmethod
    def fast(cls, **overrides) -> "TrainConfig":
        """The paper's losses and schedule with bf16 autocast and the reference config's batch
        of 64 (twice the updates per epoch, which matters when the budget is minutes)."""
        return cls(**{"mixed_precision": True, "batch_size": 64, **overrides})

    @classmethod
    def bf16(cls, **overrides) -> "TrainConfig":
        """The paper's recipe with only bf16 autocast changed (isolates what bf16 does)."""
        return cls(**{"mixed_precision": True, **overrides})

    @classmethod
    def quick(cls, **overrides) -> "TrainConfig":
        """Time-to-accuracy recipe (docs: recipes and ablations): every ingredient is a separate
        option, measured alone and combined in `benchmarks/time_to_accuracy.py`."""
        return cls(**{**QUICK_INGREDIENTS, **overrides})


# The quick recipe, ingredient by ingredient (measured one at a time against the paper's
# recipe in benchmarks/time_to_accuracy.py; docs/recipes.md tabulates what each one does).
QUICK_INGREDIENTS: dict = {
    "mixed_precision": "auto",
    "batch_size": 64,
    "species_loss_weight": 1.0,
    "encoder_dropout": 0.0,
    "lr_schedule": "cosine",
    "learning_rate": 2e-3,
    "warmup_epochs": 1.0,
    "epochs": 60,
    "early_stopping_patience_epochs": None,
    "sampling": SamplingConfig(global_queries_per_crystal=256, species_queries_per_atom=32),
}

RECIPES = {"paper": TrainConfig.paper, "fast": TrainConfig.fast, "bf16": TrainConfig.bf16,
           "quick": TrainConfig.quick}
"""Recipe name -> TrainConfig constructor (keyword overrides allowed)."""


def make_train_config(recipe: str = "paper", **options) -> TrainConfig:
    """A recipe with options on top; options may name TrainConfig or SamplingConfig fields
    (`species_queries_per_atom=32`); None values are ignored (an option left unset)."""
    if recipe not in RECIPES:
        raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    base = RECIPES[recipe]()
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    sampling_keys = {f.name for f in dataclasses.fields(SamplingConfig)}
    top, sampling = {}, {}
    for k, v in options.items():
        if v is None:
            continue
        if k in train_keys and k != "sampling":
            top[k] = v
        elif k in sampling_keys:
            sampling[k] = v
        else:
            raise ConfigError(f"unknown training option {k!r}")
    return dataclasses.replace(base, **top, sampling=dataclasses.replace(base.sampling, **sampling))


def resumed_config(saved: TrainConfig, requested: TrainConfig) -> TrainConfig:
    """The resume rule, in one place: a resumed run keeps its own recipe; only the epochs, the time
    budget and the device may change (a longer cosine schedule is stretched from where it is)."""
    return dataclasses.replace(saved, epochs=requested.epochs, max_minutes=requested.max_minutes,
                               device=requested.device)
