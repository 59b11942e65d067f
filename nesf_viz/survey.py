"""A whole dataset through a trained NeSF, once: latents, decodes, verdicts and symmetry of every
crystal (`Survey`), cached on disk so that the second look at the same data with the same model is
a file read.

`survey(data, checkpoint)` loads the crystals (anything `nesf_viz.load_crystals` takes, or a list of
Crystals / pymatgen Structures), encodes them, decodes them with a named decoder
(`nesf_viz.decode.DECODERS`; "coarse" by default), judges every decode (`nesf_viz.metrics.
crystal_verdicts`: atom count, composition, StructureMatcher, errors) and finds the space group of
every original. What the dataset explorer (`nesf_viz.viz.explorer`, `nesf_viz.explore`) shows is
computed from this and nothing else, apart from what it evaluates on request (field slices, the
species vote, the particle animation, an interpolation).

The cache. One file per (data content, model weights, decoder settings, options): its name is a
SHA-256 over the data file's bytes (or, for crystals given in memory and the embedded data, over
their positions, elements, cells and ids), the model's weights, vocabulary and box, the decoder's
`DecodeConfig` and the options that change the result. It lives in `cache_folder()`:
``$NESF_VIZ_CACHE``, else ``$XDG_CACHE_HOME/nesf_viz``, else ``~/.cache/nesf_viz`` (subfolder
``survey``), or the `cache_dir` given. Files are numpy ``.npz`` archives without pickles, written
atomically (`nesf_viz.outputs.write_inside`), so a killed run leaves no half file; an unreadable one
is recomputed. Delete the folder to drop the cache.

Shapes: B crystals, D latent size.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .checkpoints import Checkpoint, load_checkpoint
from .crystal import Crystal
from .data import load_crystals, source_path
from .decode import DECODERS, DecodeConfig, DecodeResult, decode_crystals, usable_crystals
from .device import resolve_device
from .errors import DatasetError, OutputError, UnknownSpeciesError
from .metrics import CrystalVerdict, crystal_verdicts, verdict_summary
from .outputs import DecodedFolder, Input, Output, check_apart, write_inside

log = logging.getLogger(__name__)

__all__ = ["Survey", "Quantity", "survey", "cache_folder", "crystal_system", "CACHE_FORMAT"]

CACHE_FORMAT = 2
"""Bumped when what a cache file holds, or how it is computed, changes (old files are ignored)."""

_SYSTEMS = ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"), (167, "trigonal"),
            (194, "hexagonal"), (230, "cubic"))
SYSTEM_NAMES: tuple[str, ...] = tuple(name for _, name in _SYSTEMS)


def crystal_system(spacegroup_number: int | None) -> str:
    """The crystal system of an international space-group number ('?' for none / 0)."""
    if not spacegroup_number:
        return "?"
    return next((name for last, name in _SYSTEMS if int(spacegroup_number) <= last), "?")


def cache_folder(cache_dir: str | Path | None = None) -> Path:
    """Where survey caches live: `cache_dir`, else ``$NESF_VIZ_CACHE``, else
    ``$XDG_CACHE_HOME/nesf_viz``, else ``~/.cache/nesf_viz``; then the subfolder ``survey``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("NESF_VIZ_CACHE")
    if env:
        return Path(env) / "survey"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nesf_viz" / "survey"


# ----------------------------------------------------------------------------- quantities


@dataclass(frozen=True, eq=False)
class Quantity:
    """One value per crystal, to place the map's points by (numeric) or colour them by.

    values: (B,) float, NaN where a crystal has none; or, when `categories` is given, (B,) int
    codes into it (categorical). `unit`-bearing names, e.g. "position error (Å)"."""

    name: str
    values: np.ndarray
    categories: tuple[str, ...] | None = None

    @property
    def categorical(self) -> bool:
        return self.categories is not None

    def text(self, i: int) -> str:
        """Crystal i's value as shown on hover and in tables."""
        v = self.values[i]
        if self.categories is not None:
            return self.categories[int(v)]
        if not np.isfinite(v):
            return "none" if np.isnan(v) else "inf"
        return f"{v:.4g}"


def _category(name: str, labels: Sequence[str], order: Sequence[str] | None = None) -> Quantity:
    cats = tuple(order) if order is not None else tuple(sorted(set(labels)))
    index = {c: k for k, c in enumerate(cats)}
    return Quantity(name, np.array([index[x] for x in labels], dtype=np.int64), cats)


def _as_number(text: Any) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v


# ----------------------------------------------------------------------------- the survey


@dataclass(frozen=True, eq=False)
class Survey:
    """Every crystal of a dataset through one model: the originals, their latents (B, D), their
    decodes (a `DecodeResult` in the same order), one `CrystalVerdict` each, the space group of
    each original (0: none found) and what was skipped. Built by `survey`."""

    crystals: tuple[Crystal, ...]
    latents: np.ndarray
    decoded: DecodeResult
    verdicts: tuple[CrystalVerdict, ...]
    spacegroups: np.ndarray
    checkpoint: Checkpoint
    checkpoint_label: str
    decoder: str
    source: str
    source_path: Path | None
    checkpoint_path: Path | None
    skipped: tuple[str, ...]
    cache_path: Path | None
    from_cache: bool
    seconds: float
    """Seconds this call took (a cache hit: the read; otherwise the whole survey)."""
    compute_seconds: float
    """Seconds the survey took when it was computed (stored in the cache)."""
    memo: dict = field(default_factory=dict, repr=False, compare=False)
    """Views derived from it once and kept (the map's projections, hover texts)."""

    def __len__(self) -> int:
        return len(self.crystals)

    # ---- per crystal
    @functools.cached_property
    def ids(self) -> list[str]:
        return [c.id or f"#{i}" for i, c in enumerate(self.crystals)]

    @functools.cached_property
    def formulas(self) -> list[str]:
        return [v.true_formula for v in self.verdicts]

    @functools.cached_property
    def right(self) -> np.ndarray:
        """(B,) bool: decoded right (atom count, composition and StructureMatcher when computed)."""
        return np.array([v.right for v in self.verdicts], dtype=bool)

    @functools.cached_property
    def decoded_crystals(self) -> list[Crystal]:
        return self.decoded.to_crystals()

    @functools.cached_property
    def elements(self) -> list[str]:
        """Element symbols present in the originals, by atomic number."""
        from pymatgen.core import Element

        zs = sorted({int(z) for c in self.crystals for z in c.atomic_numbers})
        return [Element.from_Z(z).symbol for z in zs]

    @functools.cached_property
    def _latents64(self) -> np.ndarray:
        return np.ascontiguousarray(self.latents, dtype=np.float64)

    def latents_tensor(self) -> torch.Tensor:
        """(B, D) latents on the model's device, in its dtype (for `nesf_viz.viz.compute`)."""
        p = next(self.checkpoint.model.parameters())
        return torch.as_tensor(self.latents, dtype=p.dtype, device=p.device)

    def summary(self) -> str:
        """One line: how many crystals, what decoded them, how many right (and what was skipped)."""
        skipped = ""
        if self.skipped:
            skipped = f"; {len(self.skipped)} skipped (elements outside the model's vocabulary)"
        return (f"{len(self)} crystals of {self.source} through {self.checkpoint_label} ({self.decoder} decoder): "
                f"{verdict_summary(self.verdicts)}{skipped}")

    # ---- map quantities
    @functools.cached_property
    def quantities(self) -> dict[str, Quantity]:
        """Every per-crystal quantity by name: verdicts, errors, sizes, symmetry, and the data's own
        properties ("property: NAME": numeric when every value reads as a number, else categorical
        when it has at most 24 distinct values; ids, formulas and CIF text are left out)."""
        v = self.verdicts
        arr = lambda f: np.array([f(x) for x in v], dtype=np.float64)  # noqa: E731
        volume = np.array([abs(float(np.linalg.det(c.lattice))) for c in self.crystals])
        natoms = arr(lambda x: x.true_atoms)
        systems = [crystal_system(int(s)) for s in self.spacegroups]
        out = [
            _category("decoded right / wrong", ["right" if r else "WRONG" for r in self.right], ("right", "WRONG")),
            _category("StructureMatcher", ["not computed" if x.matched is None else
                                           ("matched" if x.matched else "not matched") for x in v],
                      ("matched", "not matched", "not computed")),
            _category("composition", ["right" if x.composition_right else "WRONG" for x in v], ("right", "WRONG")),
            Quantity("position error (Å)", arr(lambda x: x.position_error_A)),
            Quantity("species error (%)", arr(lambda x: x.species_error_pct)),
            Quantity("atom count error (decoded - true)", arr(lambda x: x.decoded_atoms - x.true_atoms)),
            Quantity("length error (Å)", arr(lambda x: x.length_mae_A)),
            Quantity("angle error (°)", arr(lambda x: x.angle_mae_deg)),
            Quantity("atoms (true)", natoms),
            Quantity("atoms (decoded)", arr(lambda x: x.decoded_atoms)),
            Quantity("cell volume (Å³)", volume),
            Quantity("volume per atom (Å³)", volume / np.maximum(natoms, 1)),
            Quantity("space group (number)", np.where(self.spacegroups > 0, self.spacegroups, np.nan).astype(float)),
            _category("crystal system", systems, tuple(s for s in (*SYSTEM_NAMES, "?") if s in systems)),
        ]
        out += self._property_quantities()
        return {q.name: q for q in out}

    def _property_quantities(self) -> list[Quantity]:
        names: dict[str, None] = {}
        for c in self.crystals:
            names.update(dict.fromkeys(c.properties))
        out = []
        for name in names:
            if name.lower() in ("cif", "material_id", "id", "formula"):
                continue
            raw = [c.properties.get(name) for c in self.crystals]
            nums = [_as_number(x) for x in raw]
            present = [x for x in raw if x not in (None, "")]
            if present and all(n is not None for n, x in zip(nums, raw) if x not in (None, "")):
                out.append(Quantity(f"property: {name}", np.array([np.nan if n is None else n for n in nums])))
            elif present and len(set(map(str, present))) <= 24:
                out.append(_category(f"property: {name}", ["?" if x in (None, "") else str(x) for x in raw]))
        return out

    def element_quantity(self, symbol: str) -> Quantity:
        """Categorical: whether each original contains the element `symbol`."""
        from pymatgen.core import Element

        z = Element(symbol).Z
        has = [bool(np.any(c.atomic_numbers == z)) for c in self.crystals]
        return _category(f"contains {symbol}", [f"with {symbol}" if h else f"without {symbol}" for h in has],
                         (f"with {symbol}", f"without {symbol}"))

    # ---- looking things up
    def nearest(self, index: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The k crystals nearest to crystal `index` in latent space (Euclidean), itself left out:
        indices (k,) and distances (k,), nearest first (ties by index)."""
        if not 0 <= index < len(self):
            raise IndexError(f"crystal {index} out of range for {len(self)} crystals")
        z = self._latents64
        diff = z - z[index]
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        d[index] = np.inf
        k = min(k, len(self) - 1)
        order = np.lexsort((np.arange(len(d)), d))[:k]
        return order, d[order]

    def find(self, text: str, limit: int = 200) -> list[int]:
        """Crystals whose id or formula matches `text` (case-insensitive): exact id or reduced
        formula first, then ids / formulas that contain it; at most `limit`."""
        t = text.strip().lower()
        if not t:
            return []
        exact = [i for i, (cid, f) in enumerate(zip(self.ids, self.formulas)) if t in (cid.lower(), f.lower())]
        seen = set(exact)
        part = [i for i, (cid, f) in enumerate(zip(self.ids, self.formulas))
                if i not in seen and (t in cid.lower() or t in f.lower())]
        return (exact + part)[:limit]

    def worst(self, by: str = "position error (Å)", n: int = 100) -> list[int]:
        """The n crystals with the largest values of a numeric quantity (decoded-wrong ones first
        on ties; a missing value counts as the worst)."""
        q = self.quantities[by]
        if q.categorical:
            raise ValueError(f"{by!r} is categorical; sort by a numeric quantity")
        vals = np.where(np.isnan(q.values), np.inf, np.abs(q.values))
        order = np.lexsort((np.arange(len(self)), self.right, -vals))
        return order[:n].tolist()

    def row(self, i: int) -> dict:
        """Crystal i as a table row: its verdict, symmetry, size and its properties."""
        v = self.verdicts[i]
        c = self.crystals[i]
        props = {f"property_{k}": val for k, val in c.properties.items()
                 if k.lower() not in ("cif", "material_id", "id")}
        sg = int(self.spacegroups[i])
        return {"index": i, "id": self.ids[i], "formula": v.true_formula, "decoded_formula": v.decoded_formula,
                "true_atoms": v.true_atoms, "decoded_atoms": v.decoded_atoms, "right": v.right,
                "composition_right": v.composition_right,
                "structure_matcher": "" if v.matched is None else ("yes" if v.matched else "no"),
                "position_error_A": round(v.position_error_A, 5), "species_error_pct": round(v.species_error_pct, 3),
                "length_mae_A": round(v.length_mae_A, 5), "angle_mae_deg": round(v.angle_mae_deg, 4),
                "spacegroup": sg or "", "crystal_system": crystal_system(sg),
                "cell_volume_A3": round(abs(float(np.linalg.det(c.lattice))), 4), **props}

    # ---- writing a selection out
    def export(self, indices: Sequence[int], folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write crystals `indices` to `folder`: ``selection.csv`` (a `row` each), the decoded crystals
        as CIFs in ``decoded/`` and the originals in ``original/`` (each with its ``summary.csv``
        naming which file holds which id). File names come from the ids made safe
        (`nesf_viz.outputs.DecodedFolder`); nothing is written outside `folder`. A folder that
        already holds an export is refused unless `overwrite`; so is one that holds the data file
        or the checkpoint. Returns the path of ``selection.csv``."""
        from pymatgen.io.cif import CifWriter

        indices = [int(i) for i in indices]
        if not indices:
            raise OutputError("nothing selected: select crystals on the map first")
        bad = [i for i in indices if not 0 <= i < len(self)]
        if bad:
            raise IndexError(f"crystals {bad[:5]} out of range for {len(self)} crystals")
        folder = Path(folder).expanduser()
        inputs = [Input("data", p) for p in (self.source_path,) if p is not None]
        inputs += [Input("checkpoint", p) for p in (self.checkpoint_path,) if p is not None]
        check_apart([Output("folder", folder, folder=True)], inputs)
        table = folder / "selection.csv"
        if os.path.lexists(table) and not overwrite:
            raise OutputError(f"{folder} already holds an export ({table.name}); tick overwrite or choose another "
                              "folder")
        rows = [self.row(i) for i in indices]

        def cif(crystal: Crystal) -> str | None:
            if not crystal.num_atoms or not crystal.has_physical_cell():
                return None
            return str(CifWriter(crystal.to_structure()))

        with DecodedFolder(folder / "decoded", overwrite=overwrite, flag="folder") as dec, \
                DecodedFolder(folder / "original", overwrite=overwrite, flag="folder") as orig:
            dec_names = dec.add([(self.ids[i], cif(self.decoded_crystals[i]), {"id": self.ids[i]}) for i in indices])
            orig_names = orig.add([(self.ids[i], cif(self.crystals[i]), {"id": self.ids[i]}) for i in indices])
        for r, d, o in zip(rows, dec_names, orig_names):
            r["decoded_cif"] = f"decoded/{d}" if d else ""
            r["original_cif"] = f"original/{o}" if o else ""
        return write_inside(folder, table.name, _csv_text(rows))


def _csv_text(rows: Sequence[dict]) -> str:
    import csv

    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, restval="", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


# ----------------------------------------------------------------------------- hashing


def _digest_file(h: "hashlib._Hash", path: Path) -> None:
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def _data_digest_of_path(path: Path) -> str:
    """SHA-256 over a data file's bytes, or over a folder's .cif files (names and bytes, sorted)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(path.glob("*.cif")):
            h.update(f.name.encode("utf-8", "surrogateescape") + b"\0")
            _digest_file(h, f)
    else:
        _digest_file(h, path)
    return h.hexdigest()


def _crystals_digest(crystals: Sequence[Crystal]) -> str:
    """SHA-256 over crystals' ids, cells, elements and positions (float64 bytes)."""
    h = hashlib.sha256()
    for c in crystals:
        h.update(str(c.id).encode("utf-8", "surrogatepass") + b"\0")
        h.update(np.asarray(c.lengths_angstrom, np.float64).tobytes())
        h.update(np.asarray(c.angles_deg, np.float64).tobytes())
        h.update(np.asarray(c.atomic_numbers, np.int64).tobytes())
        h.update(np.ascontiguousarray(c.positions_angstrom, np.float64).tobytes())
        h.update(json.dumps(c.properties, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _checkpoint_digest(ckpt: Checkpoint) -> str:
    """SHA-256 over a model's weights (names and bytes), vocabulary, box and network config."""
    h = hashlib.sha256()
    for name, t in sorted(ckpt.model.state_dict().items()):
        h.update(name.encode() + b"\0")
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([list(ckpt.vocab.atomic_numbers), list(ckpt.box.min_angstrom), list(ckpt.box.max_angstrom),
                         repr(ckpt.model_config)]).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- cache files


def _ragged(arrays: Sequence[np.ndarray], width: int | None, dtype) -> tuple[np.ndarray, np.ndarray]:
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    shape = (0, width) if width else (0,)
    flat = np.concatenate([np.asarray(a, dtype) for a in arrays]) if len(arrays) and counts.sum() else \
        np.zeros(shape, dtype)
    return flat.reshape((-1, width) if width else (-1,)), counts


def _split(flat: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    edges = np.concatenate([[0], np.cumsum(counts)])
    return tuple(flat[edges[i]: edges[i + 1]].copy() for i in range(len(counts)))


def _strings(items: Sequence[str]) -> np.ndarray:
    return np.array([str(x) for x in items], dtype=str) if len(items) else np.zeros(0, dtype="<U1")


def _to_npz(s: Survey) -> bytes:
    v = s.verdicts
    op, oc = _ragged([c.positions_angstrom for c in s.crystals], 3, np.float64)
    oz, _ = _ragged([c.atomic_numbers for c in s.crystals], None, np.int64)
    d = s.decoded
    dp, dc = _ragged(d.positions_angstrom, 3, np.float64)
    dz, _ = _ragged(d.atomic_numbers, None, np.int64)
    ds, _ = _ragged(d.species, None, np.int64)
    dn, _ = _ragged(d.particles_per_atom, None, np.int64)
    arrays = dict(
        format=np.array(CACHE_FORMAT),
        ids=_strings([c.id for c in s.crystals]),
        orig_positions=op, orig_counts=oc, orig_numbers=oz,
        orig_lengths=np.array([c.lengths_angstrom for c in s.crystals], np.float64).reshape(-1, 3),
        orig_angles=np.array([c.angles_deg for c in s.crystals], np.float64).reshape(-1, 3),
        orig_properties=_strings([json.dumps(c.properties, default=str) for c in s.crystals]),
        dec_ids=_strings(d.ids), dec_positions=dp, dec_counts=dc, dec_numbers=dz, dec_species=ds,
        dec_particles_per_atom=dn, dec_lengths=d.lengths_angstrom, dec_angles=d.angles_deg,
        dec_n_particles=d.n_particles,
        latents=s.latents.astype(np.float32),
        v_true_formula=_strings([x.true_formula for x in v]),
        v_decoded_formula=_strings([x.decoded_formula for x in v]),
        v_true_atoms=np.array([x.true_atoms for x in v], np.int64),
        v_decoded_atoms=np.array([x.decoded_atoms for x in v], np.int64),
        v_composition_right=np.array([x.composition_right for x in v], bool),
        v_matched=np.array([-1 if x.matched is None else int(x.matched) for x in v], np.int8),
        v_position_error=np.array([x.position_error_A for x in v], np.float64),
        v_species_error=np.array([x.species_error_pct for x in v], np.float64),
        v_length_mae=np.array([x.length_mae_A for x in v], np.float64),
        v_angle_mae=np.array([x.angle_mae_deg for x in v], np.float64),
        v_matcher_reason=np.array([x.matcher_reason for x in v], dtype=str),
        spacegroups=s.spacegroups.astype(np.int64),
        skipped=_strings(s.skipped),
        meta=np.array(json.dumps({"source": s.source, "checkpoint": s.checkpoint_label, "decoder": s.decoder,
                                  "compute_seconds": s.compute_seconds, "timing_s": d.timing_s,
                                  "created": time.strftime("%Y-%m-%d %H:%M:%S")})),
    )
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _from_npz(path: Path, config: DecodeConfig) -> dict:
    """The fields of a Survey stored in `path` (KeyError / ValueError / OSError when it is not one)."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != CACHE_FORMAT:
            raise ValueError(f"cache format {int(z['format'])}, expected {CACHE_FORMAT}")
        a = {k: z[k] for k in z.files}
    meta = json.loads(str(a["meta"]))
    ids = [str(x) for x in a["ids"]]
    pos = _split(a["orig_positions"], a["orig_counts"])
    num = _split(a["orig_numbers"], a["orig_counts"])
    crystals = tuple(
        Crystal(p, n, tuple(float(x) for x in ln), tuple(float(x) for x in an), id=cid, properties=json.loads(str(pr)))
        for p, n, ln, an, cid, pr in zip(pos, num, a["orig_lengths"], a["orig_angles"], ids, a["orig_properties"]))
    dc = a["dec_counts"]
    decoded = DecodeResult(
        ids=tuple(str(x) for x in a["dec_ids"]), positions_angstrom=_split(a["dec_positions"], dc),
        species=_split(a["dec_species"], dc), atomic_numbers=_split(a["dec_numbers"], dc),
        particles_per_atom=_split(a["dec_particles_per_atom"], dc), lengths_angstrom=a["dec_lengths"],
        angles_deg=a["dec_angles"], n_particles=a["dec_n_particles"], timing_s=dict(meta.get("timing_s", {})),
        config=config)
    matched = [None if m < 0 else bool(m) for m in a["v_matched"]]
    verdicts = tuple(CrystalVerdict(
        id=cid, true_formula=str(tf), decoded_formula=str(df), true_atoms=int(ta), decoded_atoms=int(da),
        composition_right=bool(cr), matched=m, position_error_A=float(pe), species_error_pct=float(se),
        length_mae_A=float(le), angle_mae_deg=float(ae), matcher_reason=str(mr))
        for cid, tf, df, ta, da, cr, m, pe, se, le, ae, mr in zip(
            ids, a["v_true_formula"], a["v_decoded_formula"], a["v_true_atoms"], a["v_decoded_atoms"],
            a["v_composition_right"], matched, a["v_position_error"], a["v_species_error"], a["v_length_mae"],
            a["v_angle_mae"], a["v_matcher_reason"]))
    return dict(crystals=crystals, latents=a["latents"], decoded=decoded, verdicts=verdicts,
                spacegroups=a["spacegroups"], skipped=tuple(str(x) for x in a["skipped"]),
                compute_seconds=float(meta.get("compute_seconds", float("nan"))))


# ----------------------------------------------------------------------------- the entry point


def _load_checkpoint(checkpoint: Any, device: torch.device) -> tuple[Checkpoint, str, Path | None]:
    if isinstance(checkpoint, Checkpoint):
        return checkpoint, "a loaded checkpoint", None
    from .assets import CHECKPOINTS, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    label = f"the shipped '{checkpoint}' model" if str(checkpoint) in CHECKPOINTS and not Path(
        str(checkpoint)).exists() else str(checkpoint)
    return load_checkpoint(path, device), label, path


def _read(data: Any, split: str, limit: int | None, skip_bad: bool) -> tuple[list[Crystal] | None, str, Path | None]:
    """The crystals (None when the data are a file or folder, read only on a cache miss), a label,
    and the path they come from."""
    on_error = "skip" if skip_bad else "raise"
    if isinstance(data, (str, Path)):
        src = str(data)
        path = source_path(src)
        if path is not None and path.exists():
            return None, src, path
        return load_crystals(src, split, on_error=on_error, limit=limit), src + (
            f" ({split})" if re.fullmatch(r"synthetic(?::\d+)?", src) else ""), None
    if isinstance(data, Crystal):
        data = [data]
    items = list(data)
    if not items:
        raise DatasetError("no crystals given: pass a CSV path, a CIF folder, 'synthetic' or a list of crystals")
    if all(isinstance(x, Crystal) for x in items):
        crystals = items
    else:
        from .data import read_structures

        crystals = read_structures(items, ids=[_structure_id(s, i) for i, s in enumerate(items)], on_error=on_error)
    return (crystals[:limit] if limit else crystals), f"{len(items)} crystals given", None


def _structure_id(structure: Any, index: int) -> str:
    """A Structure's `material_id` property when it has one, else its position in the list."""
    props = getattr(structure, "properties", None) or {}
    return str(props.get("material_id") or index)


def survey(
    data: Any,
    checkpoint: Any = "synthetic",
    *,
    decoder: str = "coarse",
    split: str = "train",
    limit: int | None = None,
    skip_bad: bool = False,
    match: bool = True,
    symprec_angstrom: float = 0.1,
    batch_size: int = 64,
    device: str = "auto",
    cache: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Survey:
    """Encode, decode and judge every crystal of `data` with a trained NeSF, or read the result
    from the cache when this exact survey was made before.

    data: a CSV path, a CIF folder or file, a dataset name (``lcs6_test``), ``synthetic[:N]`` (with
    `split`), or a list of Crystals / pymatgen Structures. checkpoint: a shipped model's name
    (`nesf_viz.assets.CHECKPOINTS`), a checkpoint file or run folder, or a loaded `Checkpoint`.
    decoder: a name of `nesf_viz.decode.DECODERS` ("coarse": about 60 crystals a second on a
    2-core CPU for the LCS6Å model). skip_bad: drop crystals with elements outside the model's
    vocabulary (and unreadable ones) and say how many, instead of raising. match: run
    StructureMatcher on every pair (about 30 ms a crystal). cache / cache_dir: see the module
    docstring (`cache_folder`).
    """
    t0 = time.perf_counter()
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    config = DecodeConfig.preset(decoder)
    dev = resolve_device(device)
    ckpt, label, ckpt_path = _load_checkpoint(checkpoint, dev)
    crystals, source, path = _read(data, split, limit, skip_bad)
    data_key = (_data_digest_of_path(path) if path is not None else _crystals_digest(crystals))
    named = isinstance(data, str) and path is not None and not Path(data).exists()
    key = hashlib.sha256(json.dumps({
        "format": CACHE_FORMAT, "data": data_key, "named": named, "split": split, "limit": limit,
        "skip_bad": skip_bad, "model": _checkpoint_digest(ckpt), "decoder": config.to_dict(), "match": match,
        "symprec": symprec_angstrom}, sort_keys=True, default=str).encode()).hexdigest()
    folder = cache_folder(cache_dir)
    file = folder / f"survey-{key[:40]}.npz"
    common = dict(checkpoint=ckpt, checkpoint_label=label, decoder=decoder, source=source, source_path=path,
                  checkpoint_path=ckpt_path)
    if cache and file.is_file():
        try:
            stored = _from_npz(file, config)
        except (OSError, KeyError, ValueError) as exc:
            log.warning("survey cache %s unreadable (%s); computing again", file, exc)
        else:
            return Survey(**stored, **common, cache_path=file, from_cache=True, seconds=time.perf_counter() - t0)
    if crystals is None:
        crystals = load_crystals(path if not named else data, split, on_error="skip" if skip_bad else "raise",
                                 limit=limit)
    fields = _compute(crystals, ckpt, config, dev, skip_bad, match, symprec_angstrom, batch_size, progress)
    elapsed = time.perf_counter() - t0
    s = Survey(**fields, **common, cache_path=file if cache else None, from_cache=False, seconds=elapsed,
               compute_seconds=elapsed)
    if cache:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_inside(folder, file.name, _to_npz(s))
        except (OSError, OutputError) as exc:
            warnings.warn(f"survey not cached ({exc}); set $NESF_VIZ_CACHE or cache_dir= to a writable folder",
                          stacklevel=2)
            s = _replace(s, cache_path=None)
    return s


def _replace(s: Survey, **changes: Any) -> Survey:
    import dataclasses

    return dataclasses.replace(s, **changes)


def _compute(crystals: list[Crystal], ckpt: Checkpoint, config: DecodeConfig, dev: torch.device, skip_bad: bool,
             match: bool, symprec: float, batch_size: int, progress: bool) -> dict:
    from tqdm.auto import tqdm

    from .data import CrystalBatch
    from .symmetry import spacegroup_number

    try:
        kept = usable_crystals(crystals, ckpt.vocab, ckpt.box, skip_bad=skip_bad)
    except UnknownSpeciesError as exc:
        raise UnknownSpeciesError(f"{exc}; or pass skip_bad=True to leave such crystals out") from None
    kept_ids = {id(c) for c in kept}
    skipped = tuple(c.id for c in crystals if id(c) not in kept_ids)
    model = ckpt.model.to(dev)
    dtype = next(model.parameters()).dtype
    zs = []
    with torch.no_grad():
        for s in tqdm(range(0, len(kept), 256), desc="encode", unit="batch", disable=not progress):
            zs.append(model.latents(CrystalBatch.from_crystals(kept[s: s + 256], ckpt.vocab, dtype=dtype, device=dev)))
    latents = torch.cat(zs).float().cpu().numpy()
    decoded = decode_crystals(model, kept, box=ckpt.box, vocab=ckpt.vocab, config=config,
                              batch_size=batch_size, device=dev, progress=progress)
    pred = decoded.to_crystals()
    verdicts, groups = [], []
    for t, p in tqdm(list(zip(kept, pred)), desc="verdicts + symmetry", unit="crystal", disable=not progress):
        verdicts += crystal_verdicts([t], [p], match=match)
        groups.append(spacegroup_number(t, symprec) or 0)
    return dict(crystals=tuple(kept), latents=latents, decoded=decoded, verdicts=tuple(verdicts),
                spacegroups=np.array(groups, dtype=np.int64), skipped=skipped)
