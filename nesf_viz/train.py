"""Training loop: losses, the epoch loop, resume, and DDP.

Checkpoints are written and read through `runs` (the schema's one home); `TrainConfig` and its
recipes live in `recipes`. Every epoch draws its shuffling, query jitter and dropout
from generators seeded by (seed, epoch, rank), so a run resumed from the checkpoint of
epoch k continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .augment import cell_box, shift_origin
from .checkpoints import (
    Checkpoint,
    RunFolder,
    check_resumable,
    checkpoint_inputs,
    checkpoint_payload,
    load_checkpoint,
    read_checkpoint,
    rebuild_model,
    save_checkpoint,
    train_config_of,
)
from .data import BoundingBox, Crystal, CrystalBatch, SpeciesVocab
from .device import native_bf16, resolve_device
from .errors import CheckpointError, ConfigError, DatasetError, NonFiniteLossError, TrainingError
from .fields import ground_truth_targets
from .model import SHAPE_FIELDS, NeSF, NeSFConfig
from .sampling import QuerySampler, TrainingQueries
from .train_config import TrainConfig, resumed_config

log = logging.getLogger(__name__)

LOSS_PARTS = ("loss_pos", "loss_spec", "loss_length", "loss_angle")


def epochs_in_budget(config: TrainConfig, epochs_done: int, seconds_per_epoch: float, elapsed_s: float) -> int:
    """How many epochs this run will end with: `config.epochs`, or fewer when the time budget
    (at the epoch time seen so far) ends it first. The progress bar's total, so its ETA is honest."""
    if config.max_minutes is None or seconds_per_epoch <= 0:
        return config.epochs
    left_s = 60 * config.max_minutes - elapsed_s
    return min(config.epochs, epochs_done + max(0, int(left_s // seconds_per_epoch)))


def learning_rate_at(config: TrainConfig, epoch: float) -> float:
    """The learning rate at a (fractional) epoch of `config`'s schedule."""
    if config.lr_schedule == "step":
        return config.learning_rate * 0.5 ** (int(epoch) // config.lr_halving_epochs)
    if config.lr_schedule == "cosine":
        if epoch < config.warmup_epochs:
            return config.learning_rate * (epoch + 1e-3) / config.warmup_epochs
        span = max(config.epochs - config.warmup_epochs, 1e-9)
        t = min(max((epoch - config.warmup_epochs) / span, 0.0), 1.0)
        lo = config.final_lr_fraction
        return config.learning_rate * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t)))
    raise ConfigError(f"lr_schedule must be 'step' or 'cosine', got {config.lr_schedule!r}")


@dataclass
class EpochReport:
    """What an epoch callback receives. `history` is the whole history so far."""

    epoch: int
    train: dict[str, float]
    val: dict[str, float]
    history: dict[str, list[float]]
    elapsed_seconds: float
    is_best: bool
    epochs_total: int | None = None
    """The epochs this run is set to end with (`TrainConfig.epochs`, or what `fit_to_budget` sized)."""


EpochCallback = Callable[[EpochReport], None]


@dataclass(frozen=True)
class StepReport:
    """What a step callback receives after every optimizer step (an observer: it sees floats
    the loop computes anyway and cannot change the run)."""

    epoch: float  # epochs done, fractional: 3.25 = a quarter into the fourth epoch
    step: int  # steps done in this epoch, 1-based
    steps_per_epoch: int
    parts: dict[str, float]  # this step's training loss parts
    elapsed_seconds: float


StepCallback = Callable[[StepReport], None]


class StopRequested(Exception):
    """Raised inside the loop when `train(stop=...)` is set; `train` ends like an interrupt."""


# ----------------------------------------------------------------------------- losses


class LossModule(nn.Module):
    """Wraps NeSF so that DDP sees one forward: (crystals, queries) -> loss parts.

    Kept apart from the model on purpose: fields stay queryable without training code.
    """

    def __init__(self, model: NeSF, cfg: TrainConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, crystals: CrystalBatch, q: TrainingQueries) -> dict[str, torch.Tensor]:
        cfg, model = self.cfg, self.model
        out = model.encode(crystals)
        if model.config.vae:
            mean, var = out
            z = mean + torch.sqrt(var) * torch.randn_like(mean)
        else:
            z = out
        with torch.no_grad():
            true_vec, _ = ground_truth_targets(crystals, q.position_points, q.position_index, cfg.periodic_targets)
            _, true_spec = ground_truth_targets(crystals, q.species_points, q.species_index, cfg.periodic_targets)
        pred_vec = model.position_field(z, q.position_points, q.position_index)
        pred_spec = model.species_field(z, q.species_points, q.species_index)
        lengths, angles = model.lattice(z)
        parts = {
            "loss_pos": cfg.position_loss_weight * F.mse_loss(pred_vec, true_vec),
            "loss_spec": cfg.species_loss_weight * F.cross_entropy(pred_spec, true_spec),
            "loss_length": cfg.length_loss_weight * F.mse_loss(lengths, crystals.lengths),
            "loss_angle": cfg.angle_loss_weight * F.mse_loss(angles, crystals.angles),
        }
        if model.config.vae:
            parts["loss_kl"] = cfg.kl_loss_weight * (
                -0.5 * torch.mean(torch.sum(1 + torch.log(var) - mean.pow(2) - var, 1))
            )
        parts["loss"] = sum(parts.values())
        return parts


def _epoch_seed(seed: int, epoch: int, rank: int, salt: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729 + salt) % (2**63 - 1)


def _batches(n: int, batch_size: int, generator: torch.Generator, world: int = 1) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    out = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    # BatchNorm cannot train on one crystal per rank: fold a small remainder into the previous batch.
    if len(out) > 1 and out[-1].numel() < 2 * world:
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


# ----------------------------------------------------------------------------- trainer


@dataclass
class TrainResult:
    model: NeSF
    vocab: SpeciesVocab
    box: BoundingBox
    history: dict[str, list[float]]
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    stopped_because: str


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def train(
    train_crystals: Sequence[Crystal],
    val_crystals: Sequence[Crystal],
    out_dir: str | Path | None,
    config: TrainConfig = TrainConfig(),
    model_config: NeSFConfig | None = None,
    callbacks: Sequence[EpochCallback] = (),
    resume: bool = False,
    progress: bool = True,
    check_replicas: bool = False,
    vocab: SpeciesVocab | None = None,
    overwrite: bool = False,
    init_from: str | Path | None = None,
    step_callbacks: Sequence[StepCallback] = (),
    stop: threading.Event | None = None,
    fit_to_budget: bool = False,
) -> TrainResult:
    """Train NeSF; writes `last.pt` every epoch and `best.pt` on validation improvement.

    `resume=True` continues from `out_dir/last.pt` exactly. Under `torchrun` (WORLD_SIZE > 1)
    this trains data-parallel; only rank 0 writes files and shows progress.
    `vocab` defaults to the elements of train + val; give one to reserve classes for more.
    `check_replicas` (for tests) asserts after every step that all ranks hold identical weights.
    A folder that already holds a run is refused unless `resume` (continue it) or `overwrite`.
    `init_from` (a checkpoint file) starts a new run from its weights, vocabulary, box and network
    config (a warm restart: fresh optimizer and schedule), e.g. to train a shipped model further
    when its run folder is gone; `resume` is the exact continuation and wins over it.
    `step_callbacks` see every optimizer step (live curves). Setting `stop` (from another thread,
    e.g. a Stop button) ends training after the step in flight exactly as Ctrl-C does: the
    unfinished epoch is dropped and the returned model is the one in last.pt.
    `fit_to_budget` (a fresh run with `max_minutes`, one process): after the first epoch, the run's
    epochs become as many as the budget holds at that epoch's pace (at most `config.epochs`, with
    a tenth to spare), so a cosine schedule anneals within the budget instead of being cut off
    mid-way; the checkpoints keep the sized config, so `resume` continues exactly. With the quick
    recipe's one-epoch warm-up the first epoch's learning rates do not depend on the epochs.
    """
    rank = int(os.environ.get("RANK", "0"))
    if out_dir is not None and init_from is not None and not resume:  # --overwrite would delete its source
        from .outputs import Output, check_apart

        check_apart([Output("--out", p) for p in RunFolder(out_dir).own_files()],
                    checkpoint_inputs(init_from, "--init-from"), error=CheckpointError)
    owner = RunFolder(out_dir).lock() if out_dir is not None and rank == 0 else contextlib.nullcontext()
    with owner:  # one writer per run folder; temp files of killed writers removed
        if not train_crystals:
            raise DatasetError("the training set is empty")
        if not val_crystals:
            raise DatasetError("the validation set is empty (early stopping and best.pt need one)")
        rank, world = _init_distributed(config.device)
        device = _rank_device(config.device, rank)
        folder = RunFolder(out_dir) if out_dir is not None else None
        start = _starting_point(train_crystals, val_crystals, folder, config, model_config, vocab, device,
                                resume=resume, overwrite=overwrite, init_from=init_from)
        run = _Run(start, train_crystals, val_crystals, folder, device, rank, world,
                   hooks=_Hooks(tuple(callbacks), tuple(step_callbacks), stop, check_replicas),
                   fit_to_budget=fit_to_budget and start.state is None and world == 1
                   and config.max_minutes is not None)
        if folder is not None and overwrite and not resume and rank == 0:
            folder.clear()  # the old run's best.pt must not outlive it beside the new last.pt
        return run.fit(progress and rank == 0)


# ----------------------------------------------------------------------------- where a run starts


@dataclass(frozen=True)
class _Start:
    """Where a run starts: fresh, continued exactly (`state`: the checkpoint resumed) or warm-
    started (`init`: the checkpoint whose weights it copies)."""

    config: TrainConfig
    vocab: SpeciesVocab
    box: BoundingBox
    model_config: NeSFConfig
    state: dict | None = None
    init: Checkpoint | None = None
    init_from: str | None = None


def _starting_point(train_crystals, val_crystals, folder: RunFolder | None, config: TrainConfig,
                    model_config: NeSFConfig | None, vocab: SpeciesVocab | None, device: torch.device, *,
                    resume: bool, overwrite: bool, init_from) -> _Start:
    if folder is not None and not resume and not overwrite and (folder.last.is_file() or folder.best.is_file()):
        raise CheckpointError(f"{folder.path} already holds a training run ({folder.last.name}); continue it with "
                              "--resume, start over with --overwrite, or choose another --out")
    if resume:
        start = _resumed(folder, config, device)
    elif init_from is not None:
        start = _warm_started(init_from, train_crystals, val_crystals, config, device, model_config)
    else:
        start = _fresh(train_crystals, val_crystals, config, model_config, vocab)
    cfg = start.config
    if cfg.mixed_precision == "auto":  # recorded resolved, so a resume repeats the same arithmetic
        cfg = dataclasses.replace(cfg, mixed_precision=native_bf16(device))
    elif cfg.mixed_precision and not native_bf16(device):
        log.warning("bf16 autocast is emulated on %s (no AVX512-BF16/AMX): expect it to be several times "
                    "slower than float32 (mixed_precision='auto' picks float32 here)", device)
    return dataclasses.replace(start, config=cfg)


def _resumed(folder: RunFolder | None, config: TrainConfig, device: torch.device) -> _Start:
    last = folder.last if folder is not None else None
    if last is None or not last.is_file():
        raise CheckpointError(f"--resume: no checkpoint to resume at {last}")
    state = read_checkpoint(last, device, "--resume")
    check_resumable(state, last)
    _, model_config = rebuild_model(state, last, device)  # validates config and weights
    return _Start(resumed_config(train_config_of(state, last, "--resume"), config),
                  SpeciesVocab(tuple(state["vocab"])),
                  BoundingBox(tuple(state["box_min_angstrom"]), tuple(state["box_max_angstrom"])),
                  model_config, state=state, init_from=state.get("init_from"))


def _as_tuple(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _warm_started(init_from, train_crystals, val_crystals, config: TrainConfig, device: torch.device,
                  model_config: NeSFConfig | None = None) -> _Start:
    init = load_checkpoint(init_from, device)
    if model_config is not None:
        differ = [f"{k} {getattr(model_config, k)} (its {getattr(init.model_config, k)})" for k in SHAPE_FIELDS
                  if _as_tuple(getattr(model_config, k)) != _as_tuple(getattr(init.model_config, k))]
        if differ:
            raise ConfigError(f"--init-from {init_from}: a warm start keeps that checkpoint's network, but another "
                              f"one was asked for: {'; '.join(differ)}; drop those options or train from scratch")
    for c in [*train_crystals, *val_crystals]:  # fail fast, naming the crystal and element
        init.vocab.encode(c.atomic_numbers, c.id)
    return _Start(config, init.vocab, init.box, _with_dropout(init.model_config, config), init=init,
                  init_from=str(init_from))


def _fresh(train_crystals, val_crystals, config: TrainConfig, model_config: NeSFConfig | None,
           vocab: SpeciesVocab | None) -> _Start:
    vocab = vocab or SpeciesVocab.from_crystals([*train_crystals, *val_crystals])
    box = cell_box(train_crystals) if config.augment_origin_shift else BoundingBox.from_crystals(train_crystals)
    model_config = model_config or NeSFConfig(num_species=len(vocab))
    if model_config.num_species != len(vocab):
        model_config = dataclasses.replace(model_config, num_species=len(vocab))
    return _Start(config, vocab, box, _with_dropout(model_config, config))


def _with_dropout(model_config: NeSFConfig, config: TrainConfig) -> NeSFConfig:
    if config.encoder_dropout is None:
        return model_config
    return dataclasses.replace(model_config, encoder_dropout=config.encoder_dropout)


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class _Hooks:
    """What watches or steers a run from outside (none of it changes the arithmetic)."""

    epoch: tuple[EpochCallback, ...] = ()
    step: tuple[StepCallback, ...] = ()
    stop: threading.Event | None = None
    check_replicas: bool = False


@dataclass
class _Progress:
    """What a run has done so far; a resume restores it from the checkpoint."""

    history: dict[str, list[float]] = field(default_factory=dict)
    start_epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = -1
    elapsed_before: float = 0.0

    @classmethod
    def of(cls, state: dict | None) -> "_Progress":
        if state is None:
            return cls()
        return cls({k: list(v) for k, v in state["history"].items()}, int(state["epoch"]),
                   float(state["best_val_loss"]), int(state["best_epoch"]), float(state["elapsed_seconds"]))

    def record(self, epoch: int, train_parts: dict, val_parts: dict, lr: float, seconds: float,
               cpu_seconds: float) -> bool:
        """Append one epoch to the history; whether it is the best so far."""
        is_best = val_parts["loss"] < self.best_val
        if is_best:
            self.best_val, self.best_epoch = val_parts["loss"], epoch
        h = self.history
        h.setdefault("epoch", []).append(epoch + 1)
        for k, v in train_parts.items():
            h.setdefault(k, []).append(v)
        for k, v in val_parts.items():
            h.setdefault("val_" + k, []).append(v)
        h.setdefault("lr", []).append(lr)
        h.setdefault("seconds", []).append(seconds)
        # CPU seconds of all this process's threads: unlike wall seconds, barely changed by
        # other programs sharing the machine (timings of a shared machine stay comparable)
        h.setdefault("cpu_seconds", []).append(cpu_seconds)
        return is_best


class _Run:
    """One training run: the model, its optimizer and data, the epoch loop and its checkpoints."""

    def __init__(self, start: _Start, train_crystals, val_crystals, folder: RunFolder | None,
                 device: torch.device, rank: int, world: int, hooks: _Hooks, fit_to_budget: bool = False):
        self.start, self.config, self.folder = start, start.config, folder
        self.fit_to_budget = fit_to_budget
        self.device, self.rank, self.world, self.hooks = device, rank, world, hooks
        torch.manual_seed(self.config.seed)
        self.model = NeSF(config=start.model_config).to(device)
        self.loss_module = LossModule(self.model, self.config).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.learning_rate)
        if start.init is not None:
            self.model.load_state_dict(start.init.model.state_dict())
        if start.state is not None:
            self.model.load_state_dict(start.state["model_state"])
            try:
                self.optimizer.load_state_dict(start.state["optimizer_state"])
            except (ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(
                    f"--resume: {folder.last}: its optimizer state does not fit the network ({exc})") from exc
        self.progress = _Progress.of(start.state)
        self.runner: nn.Module = self.loss_module
        if world > 1:
            self.runner = nn.parallel.DistributedDataParallel(
                self.loss_module, device_ids=[device.index] if device.type == "cuda" else None)
        self.train_batch = CrystalBatch.from_crystals(train_crystals, start.vocab, device=device)
        self.val_batch = CrystalBatch.from_crystals(val_crystals, start.vocab, device=device)
        self.sampler = QuerySampler(start.box, self.config.sampling)
        self.val_sampler = QuerySampler(start.box, dataclasses.replace(
            self.config.sampling, local_sigma_angstrom=0.0, species_sigma_angstrom=0.0))
        for c in val_crystals[:50]:
            start.box.check(c)

    def elapsed(self) -> float:
        return self.progress.elapsed_before + time.perf_counter() - self.t0

    def fit(self, show: bool) -> TrainResult:
        """The epoch loop; returns the model of last.pt whatever ended the run."""
        from tqdm.auto import tqdm

        cfg, p = self.config, self.progress
        desc = "train" if cfg.max_minutes is None else f"train ({cfg.max_minutes:g} min budget)"
        self.bar = tqdm(total=cfg.epochs, initial=p.start_epoch, desc=desc, unit="epoch", disable=not show)
        self.t0 = time.perf_counter()
        self.show = show
        stopped, interrupted, epoch_seconds = "epochs done", False, 0.0
        epoch = p.start_epoch
        try:
            while epoch < self.config.epochs:  # fit_to_budget may size the epochs after the first
                stopped = self._stop_reason(epoch, epoch_seconds) or stopped
                if stopped != "epochs done":
                    break
                epoch_seconds = self._epoch(epoch)
                epoch += 1
        except NonFiniteLossError as exc:
            # the failing epoch index = epochs completed, all saved (nothing of the failing one is)
            last = self.folder.last if self.folder is not None else None
            kept = (f"{last} keeps epoch {epoch}, the last good one" if last is not None and last.is_file()
                    else "no checkpoint was written")
            raise NonFiniteLossError(f"training stopped: {exc}; {kept}; lower the learning rate or the loss "
                                     "weights (--lr, --species-weight) and start over") from None
        except (KeyboardInterrupt, StopRequested) as exc:
            if self.world > 1:
                raise
            interrupted, stopped = True, self._interrupted(exc)
        finally:
            self.bar.close()
        return self._result(stopped, interrupted)

    def _stop_reason(self, epoch: int, epoch_seconds: float) -> str | None:
        cfg, p = self.config, self.progress
        if cfg.max_minutes is not None and self.elapsed() + epoch_seconds > 60 * cfg.max_minutes:
            return f"time budget of {cfg.max_minutes} min"
        patience = cfg.early_stopping_patience_epochs
        if patience is not None and p.best_epoch >= 0 and epoch - 1 - p.best_epoch >= patience:
            return f"early stopping (no val improvement since epoch {p.best_epoch + 1})"
        if self.hooks.stop is not None and self.hooks.stop.is_set():
            raise StopRequested
        return None

    def _epoch(self, epoch: int) -> float:
        """Train, validate, record and save one epoch; its wall seconds."""
        te, ce = time.perf_counter(), time.process_time()
        h = self.hooks
        train_parts = _run_epoch(self.runner, self.model, self.optimizer, self.train_batch, self.sampler,
                                 self.config, epoch, self.rank, self.world, h.check_replicas, h.step, h.stop,
                                 self.elapsed)
        lr = self.optimizer.param_groups[0]["lr"]
        val_parts = _validate(self.loss_module, self.val_batch, self.val_sampler, self.config)
        if not math.isfinite(val_parts["loss"]):  # checked before anything of this epoch is saved
            raise NonFiniteLossError(f"the validation loss became {val_parts['loss']} after epoch {epoch + 1}")
        seconds = time.perf_counter() - te
        is_best = self.progress.record(epoch, train_parts, val_parts, lr, seconds, time.process_time() - ce)
        elapsed = self.elapsed()
        if self.fit_to_budget and epoch == 0:
            self.config = dataclasses.replace(self.config, epochs=max(1, epochs_in_budget(
                self.config, 1, 1.1 * seconds, elapsed)))
        if self.rank == 0 and self.folder is not None:
            self._save(epoch + 1, elapsed, is_best)
        self._show(epoch, train_parts, val_parts)
        report = EpochReport(epoch + 1, train_parts, val_parts, self.progress.history, elapsed, is_best,
                             self.config.epochs)
        for cb in h.epoch:
            cb(report)
        return seconds

    def _save(self, epochs_done: int, elapsed: float, is_best: bool) -> None:
        s, p = self.start, self.progress
        data = checkpoint_payload(
            model=self.model, optimizer=self.optimizer, model_config=s.model_config, train_config=self.config,
            vocab=s.vocab, box=s.box, epoch=epochs_done, history=p.history, best_val_loss=p.best_val,
            best_epoch=p.best_epoch, elapsed_seconds=elapsed, init_from=s.init_from)
        # best before last: a kill between the two leaves last.pt one epoch behind, and
        # --resume recomputes that epoch exactly and rewrites the same best.pt
        if is_best:
            save_checkpoint(self.folder.best, data)
        save_checkpoint(self.folder.last, data)

    def _show(self, epoch: int, train_parts: dict, val_parts: dict) -> None:
        cfg, bar = self.config, self.bar
        bar.update(1)
        if cfg.max_minutes is not None:  # the budget, not the epoch count, sets the end: honest ETA
            done = epoch + 1 - self.progress.start_epoch
            bar.total = epochs_in_budget(cfg, epoch + 1, (time.perf_counter() - self.t0) / done, self.elapsed())
            bar.refresh()
        bar.set_postfix({k.replace("loss_", ""): f"{v:.3g}" for k, v in train_parts.items()}
                        | {"val": f"{val_parts['loss']:.3g}"})

    def _interrupted(self, exc: BaseException) -> str:
        """Ctrl-C, Kernel > Interrupt or a Stop button: the epoch in flight is dropped, nothing
        written is lost; the model goes back to the one in last.pt, as the file says."""
        stopped = "stopped by the user" if isinstance(exc, StopRequested) else "interrupted by the user"
        last = self.folder.last if self.folder is not None else None
        if last is not None and last.is_file():
            saved = read_checkpoint(last, self.device)
            self.model.load_state_dict(saved["model_state"])
            best = (f" and {self.folder.best.name} the best (epoch {int(saved['best_epoch']) + 1})"
                    if self.folder.best.is_file() else "")
            stopped += (f" after epoch {int(saved['epoch'])}: {last} holds it{best}; "
                        "resume=True (--resume) continues exactly")
        else:
            stopped += " before the first epoch ended: nothing was saved"
        if self.show:  # a watcher (a notebook's panel) says it once, in its own place
            print(f"training {stopped}", file=sys.stderr)
        return stopped

    def _result(self, stopped: str, interrupted: bool) -> TrainResult:
        p, cfg = self.progress, self.config
        if p.start_epoch >= cfg.epochs:
            stopped = f"nothing to do (already trained {p.start_epoch} of {cfg.epochs} epochs)"
        elif p.start_epoch == 0 and not p.history.get("epoch") and not interrupted:  # a budget < one epoch
            raise TrainingError(f"no epoch was trained and no checkpoint written: {stopped} ended the run before "
                                "its first epoch; give a larger time budget (--max-minutes)")
        log.info("training stopped: %s", stopped)
        self.model.eval()
        paths = (self.folder.last, self.folder.best) if self.folder is not None else (None, None)
        written = [q if q is not None and q.is_file() else None for q in paths]
        return TrainResult(self.model, self.start.vocab, self.start.box, p.history, *written, stopped)


def _run_epoch(runner, model, optimizer, batch, sampler, config, epoch, rank, world, check_replicas,
               step_callbacks=(), stop=None, clock=None):
    model.train()
    shuffle = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, 0, 1))
    jitter = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, rank, 2))
    torch.manual_seed(_epoch_seed(config.seed, epoch, rank, 3))  # dropout, VAE noise
    sums: dict[str, float] = {}
    seen = 0
    batches = _batches(batch.num_crystals, config.batch_size, shuffle, world)
    for step, rows in enumerate(batches):
        for g in optimizer.param_groups:
            g["lr"] = learning_rate_at(config, epoch + step / len(batches))
        rows = rows[rank::world]
        crystals = batch.select(rows.to(batch.device))
        if config.augment_origin_shift:
            crystals = shift_origin(crystals, jitter)
        q = sampler(crystals, jitter)
        with torch.autocast(crystals.device.type, dtype=torch.bfloat16, enabled=config.mixed_precision):
            parts = runner(crystals, q)
        parts = {k: v.float() for k, v in parts.items()}
        if not _all_ranks_finite(parts["loss"], world):  # stop before a NaN step reaches the weights
            raise NonFiniteLossError(f"the training loss became {float(parts['loss'])} at step {step + 1} of epoch "
                                     f"{epoch + 1} (learning rate {optimizer.param_groups[0]['lr']:g})")
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
        if check_replicas and world > 1:
            _assert_replicas_equal(model)
        n = crystals.num_crystals
        seen += n
        values = {k: float(v.detach()) for k, v in parts.items()}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v * n
        if step_callbacks:
            report = StepReport(epoch + (step + 1) / len(batches), step + 1, len(batches), values,
                                clock() if clock is not None else 0.0)
            for cb in step_callbacks:
                cb(report)
        if stop is not None and stop.is_set():
            raise StopRequested
    return _reduce_means(sums, seen, world)


def _all_ranks_finite(loss: torch.Tensor, world: int) -> bool:
    """Whether the loss is finite on every rank (all ranks agree, so none waits on one that stopped)."""
    ok = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
    if world > 1:
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    return bool(ok.item() > 0)


@torch.no_grad()
def _validate(loss_module: LossModule, batch: CrystalBatch, sampler, config: TrainConfig) -> dict[str, float]:
    loss_module.eval()
    rng = torch.Generator().manual_seed(config.seed + 12345)  # same queries every epoch
    sums: dict[str, float] = {}
    n_all = batch.num_crystals
    for s in range(0, n_all, config.batch_size):
        crystals = batch.select(torch.arange(s, min(s + config.batch_size, n_all), device=batch.device))
        parts = loss_module(crystals, sampler(crystals, rng))
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * crystals.num_crystals
    return {k: v / n_all for k, v in sums.items()}


def _reduce_means(sums: dict[str, float], seen: int, world: int) -> dict[str, float]:
    if world > 1:
        keys = sorted(sums)
        t = torch.tensor([sums[k] for k in keys] + [float(seen)], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        sums = dict(zip(keys, t[:-1].tolist()))
        seen = int(t[-1])
    return {k: v / max(seen, 1) for k, v in sums.items()}


def _assert_replicas_equal(model: nn.Module) -> None:
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, flat)
    for other in gathered[1:]:
        if not torch.equal(other, gathered[0]):
            raise RuntimeError("DDP replicas diverged: weights differ across ranks after a step")


def _init_distributed(device: str) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not torch.distributed.is_initialized():
        use_cuda = resolve_device(device).type == "cuda"
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _dist_info()


def _rank_device(device: str, rank: int) -> torch.device:
    dev = resolve_device(device)
    if dev.type == "cuda" and torch.distributed.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return dev
