"""The one owner of output paths: names made from ids, writes that stay inside their folder, never
through a symlink, never over an input, and folders that one writer owns.

- `safe_stem` turns a crystal id into a file name stem: no separators, no `..`, no control
  characters, length-limited; `DecodedFolder.claim` makes it unique in its folder.
- `write_atomic` writes a temp file beside the target (created exclusively, so never through a
  symlink) and renames it over the target (a symlink there is replaced, not followed).
- `check_apart` refuses, before any work, an output that is an input or a folder that holds one.
- `folder_lock` lets one process at a time write a folder (`OUT/.lock`, pid and host inside; a
  lock left by a process that is gone is taken over). `RunFolder.lock` is this lock.
- `DecodedFolder` is `decode`'s output folder: one CIF per crystal and `summary.csv`, whose
  `cif_file` column says which file holds which id and is the list `overwrite` clears.
- `StreamedFile` is a file built batch by batch that a reader only ever sees whole.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .errors import NeSFError, OutputError

__all__ = ["safe_stem", "write_atomic", "write_inside", "Input", "Output", "check_apart", "folder_lock",
           "clean_temp", "DecodedFolder", "StreamedFile", "MAX_STEM_BYTES"]

log = logging.getLogger(__name__)

MAX_STEM_BYTES = 120
"""Longest file name stem made from an id, in UTF-8 bytes (file systems allow 255 bytes a name;
this leaves room for a collision suffix, the extension and the temp file's prefix and suffix)."""

_NOT_IN_NAMES = set('/\\<>:"|?*')  # separators, and what Windows refuses in a name
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def safe_stem(text: str, fallback: str) -> str:
    """A file name stem for `text` (a crystal id) that names a file in its folder and nothing else:
    separators, control and format characters (NUL, newlines, bidi overrides) and characters
    Windows refuses become `_`; runs of dots become `_` (no `..`); leading and trailing dots and
    spaces go (no hidden files); a Windows device name gets a `_` prefix; longer than
    `MAX_STEM_BYTES` is cut and a hash of the whole id added (distinct ids stay distinct).
    Empty after this: `fallback`."""
    text = unicodedata.normalize("NFC", str(text))
    chars = []
    for ch in text:
        cat = unicodedata.category(ch)
        bad = ch in _NOT_IN_NAMES or cat[0] == "C" or (cat[0] == "Z" and ch != " ")
        chars.append("_" if bad else ch)
    stem = re.sub(r"\.{2,}", "_", "".join(chars)).strip(" .")
    if not stem:
        return fallback
    if stem.split(".")[0].upper() in _WINDOWS_DEVICES:
        stem = "_" + stem
    raw = stem.encode("utf-8")
    if len(raw) > MAX_STEM_BYTES:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        stem = raw[: MAX_STEM_BYTES - 9].decode("utf-8", "ignore").rstrip(" .") + "~" + digest
    return stem


# ----------------------------------------------------------------------------- writing


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write `data` (text, bytes, or a function writing a given path) to `path` atomically: a temp
    file beside it, created exclusively (so never through a symlink), fsynced, then renamed over
    `path` (a symlink at `path` is replaced, its target left alone). A failure leaves `path` as it
    was and no temp file; OSError propagates."""
    path = Path(path)
    stem = path.name if len(path.name.encode("utf-8", "surrogateescape")) <= 200 else "long-name"  # 255 a name
    tmp = path.with_name(f".{stem}.tmp{os.getpid()}-{secrets.token_hex(4)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
        with os.fdopen(fd, "wb") as fh:
            if not callable(data):
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        if callable(data):
            data(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()
    return path


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and Path(name).name == name and "/" not in name and \
        "\\" not in name and "\x00" not in name


def write_inside(folder: Path, name: str, data: str | bytes | Callable[[Path], None]) -> Path:
    """`write_atomic` of `folder/name`, after checking that `name` is one plain file name, so the
    write lands in the resolved folder whatever the name (a symlink named so is replaced)."""
    where = _resolved(folder)
    if not _is_plain_name(name) or Path(os.path.normpath(where / name)).parent != where:
        raise OutputError(f"refusing to write {name!r}: not a plain file name inside {folder}")
    try:
        return write_atomic(folder / name, data)
    except OSError as exc:
        raise OutputError(f"cannot write {folder / name} ({exc.strerror or exc}); free space or choose "
                          "another folder") from exc


def clean_temp(folder: Path, pattern: str = ".*.tmp*") -> None:
    """Remove temp files that a killed writer left in `folder` (only its owner calls this)."""
    for tmp in folder.glob(pattern):
        if tmp.is_file() or tmp.is_symlink():
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- inputs vs outputs


@dataclass(frozen=True)
class Input:
    """A path a command reads: `flag` names the option, `what` says how (empty: the path given)."""

    flag: str
    path: Path
    what: str = ""


@dataclass(frozen=True)
class Output:
    """A path a command writes: a file, or a folder it writes files into."""

    flag: str
    path: Path
    folder: bool = False


def _resolved(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare what we can
        return Path(os.path.abspath(path))


def _same(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:  # hard links, bind mounts
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_apart(outputs: Sequence[Output], inputs: Sequence[Input],
                error: type[NeSFError] = OutputError) -> None:
    """Refuse (one `error` naming both) an output that is an input, or an output folder that
    holds one. Inputs that do not exist on disk (the embedded data, a shipped model's name) are
    skipped. Call it before any work."""
    for out in outputs:
        ro = _resolved(out.path)
        for inp in inputs:
            if not os.path.lexists(inp.path):
                continue
            ri = _resolved(inp.path)
            source = f"{inp.flag} {inp.path}" if not inp.what else f"{inp.path}, {inp.what}"
            if _same(out.path, inp.path):
                itself = f"is {inp.what} ({inp.path})" if inp.what else f"is the input itself ({source})"
                raise error(f"{out.flag} {out.path} {itself}: writing it would overwrite its source; "
                            "choose another path")
            if out.folder and ro in ri.parents:
                raise error(f"{out.flag} {out.path} holds an input ({source}): files written there could "
                            "overwrite it; choose another folder")


# ----------------------------------------------------------------------------- one writer per folder


def _lock_owner(lock_path: Path) -> dict | None:
    try:
        owner = json.loads(lock_path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: cannot check, so assume it runs
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def folder_lock(lock_path: Path, what: str, doing: str = "written",
                error: type[NeSFError] = OutputError) -> Iterator[None]:
    """Own `what` (a folder or file, named in messages) through `lock_path` for the duration:
    created exclusively with this pid and host; a live owner's lock is refused (`error`), a lock
    left by a process that is gone is taken over."""
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock_path)
            if owner is not None and _alive(owner):
                raise error(f"{what} is being {doing} by another process (pid {owner.get('pid')} on "
                            f"{owner.get('host')}); wait for it, or remove {lock_path} if that process is gone"
                            ) from None
            log.warning("taking over %s: its lock was left by a process that is gone", what)
            lock_path.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise error(f"{what} cannot be written ({exc.strerror or exc}); choose a writable path") from exc
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        break
    else:
        raise error(f"{what}: could not take its lock {lock_path} (another process keeps taking it)")
    try:
        yield
    finally:
        if _lock_owner(lock_path) == me:
            lock_path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- decode's folder


class DecodedFolder:
    """`decode`'s output folder, owned while open: one CIF per decoded crystal (named from its id by
    `safe_stem`, made unique: a collision gets `-2`, `-3`, ...) and `summary.csv`, a row per input
    crystal whose `cif_file` column names the file holding its decode (empty: no CIF, e.g. an
    impossible lattice). The summary is rewritten atomically after every batch, so it always
    lists exactly the CIFs written.

    A folder that already holds results (a summary.csv or .cif files) is refused unless
    `overwrite` (the files its summary lists are removed when the first batch is written) or
    `append` (rows are added; new names avoid the old ones). Either way .cif files that its
    summary does not list are refused, not deleted: nesf_viz did not write them.
    """

    SUMMARY = "summary.csv"
    LOCK = ".lock"

    def __init__(self, path: str | Path, *, overwrite: bool = False, append: bool = False, flag: str = "--out"):
        if overwrite and append:
            raise OutputError(f"{flag}: give overwrite or append, not both")
        self.path = Path(path)
        self.overwrite, self.append, self.flag = overwrite, append, flag
        self.rows: list[dict] = []
        self.written: list[str] = []
        self._stale: list[str] = []
        self._taken: set[str] | None = None
        self._fields: list[str] = []
        self._lock: contextlib.AbstractContextManager | None = None

    # --- ownership
    def __enter__(self) -> "DecodedFolder":
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{self.flag} {self.path} is an existing file; give a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.flag} {self.path} cannot be written ({exc.strerror or exc}); "
                              "choose a writable folder") from exc
        self._lock = folder_lock(self.path / self.LOCK, f"{self.flag} {self.path}", "written")
        self._lock.__enter__()
        try:
            clean_temp(self.path)
            self._inspect()
        except BaseException:
            self._lock.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None

    def _read_summary(self) -> tuple[list[dict], list[str]]:
        summary = self.path / self.SUMMARY
        if not os.path.lexists(summary):
            return [], []
        try:
            with summary.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                rows, fields = list(reader), list(reader.fieldnames or [])
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise OutputError(f"{self.flag} {self.path}: its {self.SUMMARY} cannot be read ({exc}); it is not a "
                              "decode summary: move it away or choose another folder") from exc
        if "id" not in fields:
            raise OutputError(f"{self.flag} {self.path}: its {self.SUMMARY} is not a decode summary (no 'id' column); "
                              "move it away or choose another folder")
        return rows, fields

    @staticmethod
    def _listed(rows: Sequence[dict]) -> list[str]:
        """The CIFs a summary says it wrote (only plain .cif names: a summary can name nothing else)."""
        names = []
        for r in rows:
            name = r.get("cif_file")
            if name is None:  # a summary of an older version: named after the id
                name = f"{r.get('id', '')}.cif"
            if name and name.lower().endswith(".cif") and _is_plain_name(name):
                names.append(name)
        return names

    def _inspect(self) -> None:
        rows, fields = self._read_summary()
        listed = self._listed(rows)
        cifs = sorted(n for n in os.listdir(self.path) if n.lower().endswith(".cif"))
        if (rows or fields or cifs) and not (self.overwrite or self.append):
            raise OutputError(f"{self.flag} {self.path} already holds decoded results ({len(cifs)} .cif files, "
                              f"{len(rows)} summary rows); add --overwrite to replace them, --append to add to "
                              "them, or choose another folder")
        known = {n.casefold() for n in listed}
        unlisted = [n for n in cifs if n.casefold() not in known]
        if unlisted:
            more = f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
            raise OutputError(f"{self.flag} {self.path} holds .cif files that its {self.SUMMARY} does not list "
                              f"({', '.join(unlisted[:3])}{more}): nesf_viz did not write them, so it neither "
                              "deletes nor mixes them; move them away or choose another folder")
        if self.overwrite:
            self._stale = [*listed, self.SUMMARY] if (rows or fields) else list(listed)
        else:
            self.rows = rows
            self._fields = fields

    def _clear_stale(self) -> None:
        for name in self._stale:  # plain names, checked in _listed: never outside the folder
            (self.path / name).unlink(missing_ok=True)
        self._stale = []

    # --- names and writes
    def claim(self, crystal_id: str, index: int, suffix: str = ".cif") -> str:
        """A new file name for `crystal_id` in this folder: `safe_stem`, unique (case-insensitively,
        as on macOS and Windows) against every entry of the folder and every name claimed before."""
        if self._taken is None:
            names = [*os.listdir(self.path), *self._listed(self.rows)]
            self._taken = {n.casefold() for n in names}
        stem = safe_stem(crystal_id, f"crystal{index}")
        name, k = f"{stem}{suffix}", 2
        while name.casefold() in self._taken:
            name, k = f"{stem}-{k}{suffix}", k + 1
        self._taken.add(name.casefold())
        return name

    def add(self, entries: Sequence[tuple[str, str | None, dict]]) -> list[str]:
        """Write a batch: for each (id, CIF text or None, summary row) the CIF (when there is text)
        and the row with its `cif_file`; then the summary. Returns the file names ('' = none)."""
        if self._lock is None:
            raise OutputError(f"{self.path}: use DecodedFolder as a context manager (with ...:) to write it")
        self._clear_stale()
        names = []
        try:
            for crystal_id, text, row in entries:
                name = self.claim(crystal_id, len(self.rows)) if text else ""
                if text:
                    write_inside(self.path, name, text)
                    self.written.append(name)
                self.rows.append({**row, "cif_file": name})
                names.append(name)
        finally:  # the summary lists what was written, even when a write failed half-way
            self._write_summary()
        return names

    def _write_summary(self) -> None:
        fields: list[str] = list(self._fields)
        for r in self.rows:  # a row longer than its header has a None key: not a column
            fields += [k for k in r if k is not None and k not in fields]
        if "cif_file" in fields:  # last column: old readers of the summary keep their column order
            fields.remove("cif_file")
            fields.append("cif_file")

        def write(path: Path) -> None:  # an id that is no UTF-8 (a lone surrogate) gets a visible escape
            with path.open("w", newline="", encoding="utf-8", errors="backslashreplace") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, restval="", extrasaction="ignore")
                w.writeheader()
                w.writerows(self.rows)

        write_inside(self.path, self.SUMMARY, write)


class StreamedFile:
    """A file written batch by batch that a reader only ever sees whole: batches are appended to a
    private temp file beside it (`part`), and `publish()` copies that to a second temp file and
    renames it over the target, so a crash keeps every batch published so far. One writer at a
    time (`.NAME.lock` beside it); the private temp file goes when the writer is done."""

    def __init__(self, path: str | Path, flag: str = "--out"):
        self.path = Path(path)
        self.flag = flag
        self.part = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}-part")
        self._lock: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> "StreamedFile":
        self._lock = folder_lock(self.path.with_name(f".{self.path.name}.lock"), f"{self.flag} {self.path}")
        self._lock.__enter__()
        clean_temp(self.path.parent, f".{glob.escape(self.path.name)}.tmp*")
        return self

    def publish(self) -> None:
        try:
            write_atomic(self.path, lambda tmp: shutil.copyfile(self.part, tmp))
        except OSError as exc:
            raise OutputError(f"cannot write {self.path} ({exc.strerror or exc}); free space or choose "
                              "another path") from exc

    def __exit__(self, *exc) -> None:
        self.part.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None
