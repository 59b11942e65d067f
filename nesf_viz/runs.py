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
import json
import logging
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .data import BoundingBox, SpeciesVocab
from .device import resolve_device
from .errors import CheckpointError
from .model import NeSF, NeSFConfig
from .recipes import TrainConfig

__all__ = ["RunFolder", "Checkpoint", "CHECKPOINT_FORMAT", "checkpoint_payload", "save_checkpoint",
           "read_checkpoint", "rebuild_model", "train_config_of", "load_checkpoint", "saved_train_config",
           "export_checkpoint"]

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

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.lock_path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return True  # another machine's process: cannot check, so assume it runs
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, KeyError, ValueError, TypeError):
            return True
        return True

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Own the folder for the duration; refuse when a live process owns it."""
        self.check_writable()
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and self._alive(owner):
                    raise CheckpointError(
                        f"{self.path} is being trained by another process (pid {owner.get('pid')} on "
                        f"{owner.get('host')}); wait for it, or remove {self.lock_path} if that process is gone"
                    ) from None
                log.warning("taking over %s: its lock was left by a process that is gone", self.path)
                self.lock_path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            break
        self.clean_temp()
        try:
            yield
        finally:
            if self._owner() == json.loads(me):
                self.lock_path.unlink(missing_ok=True)

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


def read_checkpoint(path: Path, device: torch.device, purpose: str = "") -> dict:
    """torch.load (weights only) and check the parts every reader needs; any failure -> CheckpointError."""
    what = f"{purpose}: " if purpose else ""
    try:
        raw = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{what}{path} could not be read as a checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); it may be truncated or not a nesf_viz checkpoint") from exc
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{what}{path} is not a nesf_viz checkpoint of format {CHECKPOINT_FORMAT}")
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        raise CheckpointError(f"{what}{path} lacks {', '.join(missing)}: damaged or written by other code")
    box = [*raw["box_min_angstrom"], *raw["box_max_angstrom"]]
    if len(box) != 6 or not all(math.isfinite(float(v)) for v in box):
        raise CheckpointError(f"{what}{path} has a bounding box that is not 6 finite numbers: {box}")
    if not raw["vocab"]:
        raise CheckpointError(f"{what}{path} has an empty species vocabulary")
    return raw


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


def export_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """A slim copy for shipping: everything but the optimizer state (not resumable).
    Never overwrites its source (that would lose the run's optimizer state for good)."""
    src_path = Path(src)
    if src_path.is_dir():
        src_path = RunFolder(src_path).checkpoint() or src_path
    if Path(dst).resolve() == src_path.resolve():
        raise CheckpointError(f"export would overwrite its source {src_path}; give another --out")
    ck = load_checkpoint(src)
    slim = {k: v for k, v in ck.raw.items() if k != "optimizer_state"}
    save_checkpoint(dst, slim)
    return Path(dst)
