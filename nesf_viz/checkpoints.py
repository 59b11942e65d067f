"""A training run folder: its file names, who may write it, and the checkpoint schema.

One process owns a run folder while it trains: `RunFolder.lock()` creates `OUT/.lock` atomically
(pid and host inside); a second trainer is refused with the owner's pid, and a lock left by a
killed process (its pid gone on this host) is taken over. The owner removes temp files that a
killed writer left behind.

Checkpoints are written here only (`checkpoint_payload` + `save_checkpoint`: temp file, fsync,
atomic rename) and read here only (`read_checkpoint` checks the schema; `load_checkpoint`
rebuilds the model), so the schema has one home. Files load with `weights_only=True`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .data import BoundingBox, SpeciesVocab
from .device import resolve_device
from .errors import CheckpointError
from .model import NeSF, NeSFConfig
from .outputs import Input, Output, check_apart, folder_lock
from .train_config import TrainConfig

__all__ = ["RunFolder", "Checkpoint", "CHECKPOINT_FORMAT", "checkpoint_payload", "save_checkpoint",
           "read_checkpoint", "rebuild_model", "train_config_of", "load_checkpoint", "saved_train_config",
           "export_checkpoint", "checkpoint_inputs", "check_resumable"]

log = logging.getLogger(__name__)


def probe_writable(folder: Path) -> None:
    """Create `folder` if needed and write and remove a probe file there; OSError if it cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-probe{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


class RunFolder:
    """Paths of one run (`last.pt`, `best.pt`: their names live here only) and its ownership."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.last = self.path / "last.pt"
        self.best = self.path / "best.pt"
        self.lock_path = self.path / ".lock"

    def holds_run(self) -> bool:
        return self.last.is_file() or self.best.is_file()

    def checkpoint(self) -> Path | None:
        """The checkpoint a reader of this folder means: best.pt, else last.pt, else None."""
        return next((p for p in (self.best, self.last) if p.is_file()), None)

    def check_writable(self) -> None:
        """Fail before any work when OUT cannot hold a run (a file, under a file, read-only)."""
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"--out {self.path} is a file, not a folder for last.pt / best.pt")
        try:
            probe_writable(self.path)
        except OSError as exc:
            raise CheckpointError(f"--out {self.path} cannot be written ({exc.strerror or exc}); "
                                  "choose a writable folder") from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Own the folder for the duration; refuse when a live process owns it."""
        self.check_writable()
        with folder_lock(self.lock_path, str(self.path), "trained", CheckpointError):
            self.clean_temp()
            yield

    def own_files(self) -> list[Path]:
        """The files a training run writes here (what `--overwrite` clears)."""
        return [self.last, self.best]

    def clear(self) -> None:
        """Remove what the last run wrote (`own_files`), so nothing of it is mistaken for the new run's."""
        for path in self.own_files():
            path.unlink(missing_ok=True)

    def clean_temp(self) -> None:
        """Remove checkpoint temp files a killed writer left (only the owner calls this)."""
        for tmp in self.path.glob(".*.pt.tmp*"):
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: everything needed to decode, evaluate or resume."""

    model: NeSF
    vocab: SpeciesVocab
    box: BoundingBox
    model_config: NeSFConfig
    train_config: TrainConfig
    history: dict[str, list[float]]
    epoch: int
    best_val_loss: float
    raw: dict


def checkpoint_payload(*, model: NeSF, optimizer: torch.optim.Optimizer | None, model_config: NeSFConfig,
                       train_config: TrainConfig, vocab: SpeciesVocab, box: BoundingBox, epoch: int,
                       history: dict[str, list[float]], best_val_loss: float, best_epoch: int,
                       elapsed_seconds: float, init_from: str | None) -> dict:
    """What a checkpoint file holds (format `CHECKPOINT_FORMAT`): plain tensors, numbers, strings
    and lists, so `torch.load(weights_only=True)` reads it. optimizer=None: not resumable."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "vocab": list(vocab.atomic_numbers),
        "box_min_angstrom": list(box.min_angstrom),
        "box_max_angstrom": list(box.max_angstrom),
        "model_state": model.state_dict(),
        "epoch": epoch,
        "history": history,
        "best_val_loss": best_val_loss,
        "best_epoch": best_epoch,
        "elapsed_seconds": elapsed_seconds,
        "torch_version": str(torch.__version__),
        "init_from": init_from,
    }
    if optimizer is not None:
        payload["optimizer_state"] = optimizer.state_dict()
    return payload


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write atomically: a temp file in the same folder, then rename over the target."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path} ({exc.strerror or exc}); choose a writable path") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


_REQUIRED_KEYS = ("model_config", "train_config", "vocab", "box_min_angstrom", "box_max_angstrom", "model_state",
                  "epoch", "history", "best_val_loss")


def _one_line(text: str, limit: int = 200) -> str:
    """An exception's text fit for a one-line message: no colour codes, no line breaks, bounded."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _field_problems(raw: dict) -> list[str]:
    """What is wrong with the types of a checkpoint's fields (empty: nothing)."""
    bad = []
    for key in ("model_config", "train_config", "history"):
        if not isinstance(raw[key], dict):
            bad.append(f"{key} is a {type(raw[key]).__name__}, not a dict")
    if isinstance(raw["history"], dict):
        for k, v in raw["history"].items():
            if not isinstance(k, str) or not isinstance(v, (list, tuple)) or not all(_is_number(x) for x in v):
                bad.append(f"history[{k!r}] is not a list of numbers")
                break
    state = raw["model_state"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        bad.append("model_state is not a dict of named tensors")
    vocab = raw["vocab"]
    if not isinstance(vocab, (list, tuple)) or not all(_is_int(z) and 1 <= z <= 118 for z in vocab):
        bad.append("vocab is not a list of atomic numbers (1..118)")
    elif len(set(vocab)) != len(vocab):
        bad.append("vocab repeats an element")
    if not _is_int(raw["epoch"]) or raw["epoch"] < 0:
        bad.append(f"epoch is {raw['epoch']!r}, not an integer >= 0")
    if not _is_number(raw["best_val_loss"]):
        bad.append(f"best_val_loss is {type(raw['best_val_loss']).__name__}, not a number")
    optional = {"best_epoch": lambda v: _is_int(v) and v >= -1,
                "elapsed_seconds": lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
                "optimizer_state": lambda v: isinstance(v, dict),
                "init_from": lambda v: v is None or isinstance(v, str),
                "torch_version": lambda v: isinstance(v, str)}
    for key, ok in optional.items():
        if key in raw and not ok(raw[key]):
            bad.append(f"{key} has the wrong type or value ({_one_line(repr(raw[key]), 60)})")
    return bad


def _non_finite_weights(state: dict) -> list[str]:
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def read_checkpoint(path: Path, device: torch.device, purpose: str = "") -> dict:
    """torch.load (weights only) and check every field's type, the box and that the weights are
    finite; any failure -> CheckpointError."""
    what = f"{purpose}: " if purpose else ""
    try:
        raw = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:  # torch's refusal of a full pickle: say plainly what loading it would do
            raise CheckpointError(
                f"{what}{path} holds a Python object ({found.group(1)}) beyond tensors and numbers: loading it "
                "would run code from the file, so nesf_viz refuses it (it is not a nesf_viz checkpoint); if you "
                "trust its source, re-save only its tensors and numbers") from exc
        core = str(exc).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]  # not torch's advice
        raise CheckpointError(f"{what}{path} could not be read as a checkpoint ({type(exc).__name__}: "
                              f"{_one_line(core)}); it may be truncated or not a nesf_viz checkpoint") from exc
    except Exception as exc:
        raise CheckpointError(f"{what}{path} could not be read as a checkpoint ({type(exc).__name__}: "
                              f"{_one_line(exc)}); it may be truncated or not a nesf_viz checkpoint") from exc
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{what}{path} is not a nesf_viz checkpoint of format {CHECKPOINT_FORMAT}")
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        raise CheckpointError(f"{what}{path} lacks {', '.join(missing)}: damaged or written by other code")
    lo, hi = raw["box_min_angstrom"], raw["box_max_angstrom"]
    box = [*lo, *hi] if isinstance(lo, (list, tuple)) and isinstance(hi, (list, tuple)) else [lo, hi]
    if len(box) != 6 or not all(_is_number(v) and math.isfinite(v) for v in box):
        raise CheckpointError(f"{what}{path} has a bounding box that is not 6 finite numbers: "
                              f"{_one_line(repr(box), 120)}")
    if any(a > b for a, b in zip(lo, hi)):
        raise CheckpointError(f"{what}{path} has a bounding box whose minimum exceeds its maximum: {lo} .. {hi}")
    if not raw["vocab"]:
        raise CheckpointError(f"{what}{path} has an empty species vocabulary")
    bad = _field_problems(raw)
    if bad:
        raise CheckpointError(f"{what}{path} has fields of the wrong type: {'; '.join(bad[:3])}; "
                              "damaged or written by other code")
    nan = _non_finite_weights(raw["model_state"])
    if nan:
        raise CheckpointError(f"{what}{path} has NaN or infinite weights ({', '.join(nan[:3])}"
                              f"{' ...' if len(nan) > 3 else ''}): a diverged training; use an earlier checkpoint")
    return raw


def check_resumable(raw: dict, path: Path) -> None:
    """What `--resume` needs beyond `read_checkpoint`: the optimizer state and the run's counters."""
    if "optimizer_state" not in raw:
        raise CheckpointError(f"{path} has no optimizer state (an exported checkpoint); cannot resume")
    missing = [k for k in ("best_epoch", "elapsed_seconds") if k not in raw]
    if missing:
        raise CheckpointError(f"--resume: {path} lacks {', '.join(missing)}: damaged or written by other code")


def rebuild_model(raw: dict, path: Path, device: torch.device) -> tuple[NeSF, NeSFConfig]:
    try:
        cfg = NeSFConfig.from_dict(raw["model_config"])
        model = NeSF(config=cfg).to(device)
        model.load_state_dict(raw["model_state"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise CheckpointError(f"{path}: its network config and weights do not fit this version of nesf_viz "
                              f"({type(exc).__name__}: {first})") from exc
    if cfg.num_species != len(raw["vocab"]):
        raise CheckpointError(f"{path}: the network has {cfg.num_species} species classes but the vocabulary "
                              f"{len(raw['vocab'])} elements")
    return model, cfg


def train_config_of(raw: dict, path: Path, purpose: str = "") -> TrainConfig:
    """The `TrainConfig` a checkpoint records; one that this version cannot read -> CheckpointError."""
    what = f"{purpose}: " if purpose else ""
    try:
        return TrainConfig.from_dict(raw["train_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what}{path}: its training config does not fit this version of nesf_viz "
                              f"({exc})") from exc


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (eval mode) and its metadata from a checkpoint file (or a run folder:
    its best.pt, else last.pt). Anything wrong with the file is a `CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).checkpoint() or path
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path} (give a .pt file or a training output folder)")
    dev = resolve_device(device)
    raw = read_checkpoint(path, dev)
    model, cfg = rebuild_model(raw, path, dev)
    model.eval()
    train_config = train_config_of(raw, path)
    return Checkpoint(
        model=model,
        vocab=SpeciesVocab(tuple(int(z) for z in raw["vocab"])),
        box=BoundingBox(tuple(raw["box_min_angstrom"]), tuple(raw["box_max_angstrom"])),
        model_config=cfg,
        train_config=train_config,
        history={k: list(v) for k, v in raw["history"].items()},
        epoch=int(raw["epoch"]),
        best_val_loss=float(raw["best_val_loss"]),
        raw=raw,
    )


def saved_train_config(out_dir: str | Path) -> TrainConfig:
    """The TrainConfig of the run in `out_dir` (its last.pt), e.g. to resume it with its own epochs."""
    path = RunFolder(out_dir).last
    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint to resume at {path}")
    return train_config_of(read_checkpoint(path, torch.device("cpu"), "--resume"), path, "--resume")


def checkpoint_inputs(path: str | Path | None, flag: str = "--checkpoint") -> list[Input]:
    """What reading checkpoint `path` touches, for `outputs.check_apart`: the path itself and, when it
    is a run folder or a file in one, the run's own files (writing one of those loses the run)."""
    if path is None:
        return []
    path = Path(path)
    run = RunFolder(path if path.is_dir() else path.parent)
    inputs = [Input(flag, path)]
    if path.is_dir() or run.holds_run():
        inputs += [Input(flag, f, f"{f.name} of the run {run.path} that {flag} reads") for f in run.own_files()]
    return inputs


def export_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """A slim copy for shipping: everything but the optimizer state (not resumable).
    Never overwrites its source, nor a file of the run it comes from (that would lose the
    run's optimizer state for good)."""
    check_apart([Output("--out", Path(dst))], checkpoint_inputs(src), error=CheckpointError)
    ck = load_checkpoint(src)
    slim = {k: v for k, v in ck.raw.items() if k != "optimizer_state"}
    save_checkpoint(dst, slim)
    return Path(dst)
