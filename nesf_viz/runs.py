"""A training run folder and who may write it.

One process owns a run folder while it trains: `RunFolder.lock()` creates `OUT/.lock` atomically
(pid and host inside); a second trainer is refused with the owner's pid, and a lock left by a
killed process (its pid gone on this host) is taken over. The owner removes temp files that a
killed writer left behind. Checkpoint writes stay in `train.save_checkpoint` (atomic rename).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Iterator

from .errors import CheckpointError

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
