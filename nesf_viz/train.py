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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .augment import cell_box, shift_origin
from .data import BoundingBox, Crystal, CrystalBatch, SpeciesVocab
from .device import native_bf16, resolve_device
from .errors import CheckpointError, ConfigError, DatasetError, NonFiniteLossError, TrainingError
from .fields import ground_truth_targets
from .model import NeSF, NeSFConfig
from .recipes import TrainConfig
from .runs import (
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
from .sampling import QuerySampler, TrainingQueries

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
    """
    rank = int(os.environ.get("RANK", "0"))
    if out_dir is not None and init_from is not None and not resume:  # --overwrite would delete its source
        from .outputs import Output, check_apart

        check_apart([Output("--out", p) for p in RunFolder(out_dir).own_files()],
                    checkpoint_inputs(init_from, "--init-from"), error=CheckpointError)
    owner = RunFolder(out_dir).lock() if out_dir is not None and rank == 0 else contextlib.nullcontext()
    with owner:  # one writer per run folder; temp files of killed writers removed
        return _train(train_crystals, val_crystals, out_dir, config, model_config, callbacks, resume, progress,
                      check_replicas, vocab, overwrite, init_from, step_callbacks, stop)


def _train(train_crystals, val_crystals, out_dir, config, model_config, callbacks, resume, progress,
           check_replicas, vocab, overwrite, init_from, step_callbacks, stop) -> TrainResult:
    """`train` inside the run folder's lock."""
    _check_numbers(config)
    if not train_crystals:
        raise DatasetError("the training set is empty")
    if not val_crystals:
        raise DatasetError("the validation set is empty (early stopping and best.pt need one)")
    rank, world = _init_distributed(config.device)
    device = _rank_device(config.device, rank)
    out = Path(out_dir) if out_dir is not None else None
    last_path = RunFolder(out).last if out else None
    best_path = RunFolder(out).best if out else None

    if out is not None and not resume and not overwrite and (last_path.is_file() or best_path.is_file()):
        raise CheckpointError(f"{out} already holds a training run ({last_path.name}); continue it with "
                              "--resume, start over with --overwrite, or choose another --out")
    state = None
    init = None
    if resume:
        if last_path is None or not last_path.is_file():
            raise CheckpointError(f"--resume: no checkpoint to resume at {last_path}")
        state = read_checkpoint(last_path, device, "--resume")
        check_resumable(state, last_path)
        vocab = SpeciesVocab(tuple(state["vocab"]))
        box = BoundingBox(tuple(state["box_min_angstrom"]), tuple(state["box_max_angstrom"]))
        _, model_config = rebuild_model(state, last_path, device)  # validates config and weights
        saved = train_config_of(state, last_path, "--resume")
        # epochs and the time budget may be extended on resume; everything else must match
        config = dataclasses.replace(saved, epochs=config.epochs, max_minutes=config.max_minutes,
                                     device=config.device)
    elif init_from is not None:
        init = load_checkpoint(init_from, device)
        vocab, box, model_config = init.vocab, init.box, init.model_config
        for c in [*train_crystals, *val_crystals]:  # fail fast, naming the crystal and element
            vocab.encode(c.atomic_numbers, c.id)
        if config.encoder_dropout is not None:
            model_config = dataclasses.replace(model_config, encoder_dropout=config.encoder_dropout)
    else:
        vocab = vocab or SpeciesVocab.from_crystals([*train_crystals, *val_crystals])
        box = cell_box(train_crystals) if config.augment_origin_shift else BoundingBox.from_crystals(train_crystals)
        model_config = model_config or NeSFConfig(num_species=len(vocab))
        if model_config.num_species != len(vocab):
            model_config = dataclasses.replace(model_config, num_species=len(vocab))
        if config.encoder_dropout is not None:
            model_config = dataclasses.replace(model_config, encoder_dropout=config.encoder_dropout)

    if config.mixed_precision == "auto":  # recorded resolved, so a resume repeats the same arithmetic
        config = dataclasses.replace(config, mixed_precision=native_bf16(device))
    elif config.mixed_precision and not native_bf16(device):
        log.warning("bf16 autocast is emulated on %s (no AVX512-BF16/AMX): expect it to be several times "
                    "slower than float32 (mixed_precision='auto' picks float32 here)", device)
    torch.manual_seed(config.seed)
    model = NeSF(config=model_config).to(device)
    loss_module = LossModule(model, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history: dict[str, list[float]] = {}
    start_epoch, best_val, best_epoch, elapsed_before = 0, math.inf, -1, 0.0
    if init is not None:
        model.load_state_dict(init.model.state_dict())
    if state is not None:
        model.load_state_dict(state["model_state"])
        try:
            optimizer.load_state_dict(state["optimizer_state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"--resume: {last_path}: its optimizer state does not fit the network ({exc})") from exc
        history = {k: list(v) for k, v in state["history"].items()}
        start_epoch = int(state["epoch"])
        best_val, best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        elapsed_before = float(state["elapsed_seconds"])

    runner: nn.Module = loss_module
    if world > 1:
        runner = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None
        )

    train_batch = CrystalBatch.from_crystals(train_crystals, vocab, device=device)
    val_batch = CrystalBatch.from_crystals(val_crystals, vocab, device=device)
    sampler = QuerySampler(box, config.sampling)
    val_sampler = QuerySampler(box, dataclasses.replace(
        config.sampling, local_sigma_angstrom=0.0, species_sigma_angstrom=0.0))
    for c in val_crystals[:50]:
        box.check(c)

    def payload(epoch: int, elapsed: float) -> dict:
        return checkpoint_payload(
            model=model, optimizer=optimizer, model_config=model_config, train_config=config, vocab=vocab,
            box=box, epoch=epoch, history=history, best_val_loss=best_val, best_epoch=best_epoch,
            elapsed_seconds=elapsed,
            init_from=str(init_from) if init is not None else (state or {}).get("init_from"))

    if out is not None and overwrite and not resume and rank == 0:
        RunFolder(out).clear()  # the old run's best.pt must not outlive it beside the new last.pt
    show = progress and rank == 0
    from tqdm.auto import tqdm

    desc = "train" if config.max_minutes is None else f"train ({config.max_minutes:g} min budget)"
    bar = tqdm(total=config.epochs, initial=start_epoch, desc=desc, unit="epoch", disable=not show)
    t0 = time.perf_counter()
    stopped = "epochs done"
    interrupted = False
    last_epoch_seconds = 0.0
    try:
        for epoch in range(start_epoch, config.epochs):
            elapsed = elapsed_before + time.perf_counter() - t0
            if config.max_minutes is not None and elapsed + last_epoch_seconds > 60 * config.max_minutes:
                stopped = f"time budget of {config.max_minutes} min"
                break
            if (
                config.early_stopping_patience_epochs is not None
                and best_epoch >= 0
                and epoch - 1 - best_epoch >= config.early_stopping_patience_epochs
            ):
                stopped = f"early stopping (no val improvement since epoch {best_epoch + 1})"
                break
            te, ce = time.perf_counter(), time.process_time()
            if stop is not None and stop.is_set():
                raise StopRequested
            train_parts = _run_epoch(runner, model, optimizer, train_batch, sampler, config, epoch, rank, world,
                                     check_replicas, step_callbacks, stop,
                                     lambda: elapsed_before + time.perf_counter() - t0)
            lr = optimizer.param_groups[0]["lr"]
            val_parts = _validate(loss_module, val_batch, val_sampler, config)
            if not math.isfinite(val_parts["loss"]):  # checked before anything of this epoch is saved
                raise NonFiniteLossError(f"the validation loss became {val_parts['loss']} after epoch {epoch + 1}")
            last_epoch_seconds = time.perf_counter() - te
            is_best = val_parts["loss"] < best_val
            if is_best:
                best_val, best_epoch = val_parts["loss"], epoch
            history.setdefault("epoch", []).append(epoch + 1)
            for k, v in train_parts.items():
                history.setdefault(k, []).append(v)
            for k, v in val_parts.items():
                history.setdefault("val_" + k, []).append(v)
            history.setdefault("lr", []).append(lr)
            history.setdefault("seconds", []).append(last_epoch_seconds)
            # CPU seconds of all this process's threads: unlike wall seconds, barely changed by
            # other programs sharing the machine (timings of a shared machine stay comparable)
            history.setdefault("cpu_seconds", []).append(time.process_time() - ce)
            elapsed = elapsed_before + time.perf_counter() - t0
            if rank == 0 and out is not None:
                data = payload(epoch + 1, elapsed)
                # best before last: a kill between the two leaves last.pt one epoch behind, and
                # --resume recomputes that epoch exactly and rewrites the same best.pt
                if is_best:
                    save_checkpoint(best_path, data)
                save_checkpoint(last_path, data)
            bar.update(1)
            if config.max_minutes is not None:  # the budget, not the epoch count, sets the end: honest ETA
                bar.total = epochs_in_budget(config, epoch + 1, (time.perf_counter() - t0) / (epoch + 1 - start_epoch),
                                             elapsed_before + time.perf_counter() - t0)
                bar.refresh()
            bar.set_postfix({k.replace("loss_", ""): f"{v:.3g}" for k, v in train_parts.items()}
                            | {"val": f"{val_parts['loss']:.3g}"})
            report = EpochReport(epoch + 1, train_parts, val_parts, history, elapsed, is_best)
            for cb in callbacks:
                cb(report)
    except NonFiniteLossError as exc:
        # the failing epoch index = epochs completed, all saved (nothing of the failing one is)
        kept = (f"{last_path} keeps epoch {epoch}, the last good one" if last_path is not None and last_path.is_file()
                else "no checkpoint was written")
        raise NonFiniteLossError(f"training stopped: {exc}; {kept}; lower the learning rate or the loss weights "
                                 "(--lr, --species-weight) and start over") from None
    except (KeyboardInterrupt, StopRequested) as exc:
        if world > 1:
            raise
        # Ctrl-C, Kernel > Interrupt or a Stop button: the epoch in flight is dropped, nothing
        # written is lost; the returned model is the one in last.pt, as the file says
        interrupted = True
        stopped = "stopped by the user" if isinstance(exc, StopRequested) else "interrupted by the user"
        if last_path is not None and last_path.is_file():
            saved = read_checkpoint(last_path, device)
            model.load_state_dict(saved["model_state"])
            best = (f" and {best_path.name} the best (epoch {int(saved['best_epoch']) + 1})"
                    if best_path.is_file() else "")
            stopped += (f" after epoch {int(saved['epoch'])}: {last_path} holds it{best}; "
                        "resume=True (--resume) continues exactly")
        else:
            stopped += " before the first epoch ended: nothing was saved"
        print(f"training {stopped}", file=sys.stderr)
    finally:
        bar.close()
    if start_epoch >= config.epochs:
        stopped = f"nothing to do (already trained {start_epoch} of {config.epochs} epochs)"
    elif start_epoch == 0 and not history.get("epoch") and not interrupted:  # e.g. a budget shorter than an epoch
        raise TrainingError(f"no epoch was trained and no checkpoint written: {stopped} ended the run before "
                            "its first epoch; give a larger time budget (--max-minutes)")
    log.info("training stopped: %s", stopped)
    model.eval()
    written = [p if p is not None and p.is_file() else None for p in (last_path, best_path)]
    return TrainResult(model, vocab, box, history, *written, stopped)


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


def _check_numbers(config: TrainConfig) -> None:
    """Numbers that must be finite are (an infinite learning rate or weight trains NaN, an infinite
    warm-up keeps the rate at 0), and the seed fits the generators; else a `ConfigError`."""
    for cfg in (config, config.sampling):
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f.name} must be a finite number, got {v!r}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or not 0 <= config.seed < 2**32:
        raise ConfigError(f"seed must be an integer from 0 to {2**32 - 1}, got {config.seed!r}")


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
