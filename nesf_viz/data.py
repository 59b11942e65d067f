"""Crystal data layer: records, species vocabulary, bounding box, batches and readers.

Shape glossary (used across nesf_viz):
    B crystals in a batch, N atoms (ragged, with a batch index), Q query points,
    P particles, T decode steps, S species classes, D latent size.

Frame. Cartesian positions are in the frame "a along x, b in the xy plane" (ASE's
``cellpar_to_cell``), the frame the NeSF reference datasets are written in. Every input is
converted into it from its lattice parameters and fractional coordinates, so a crystal is
fully described by (a, b, c, alpha, beta, gamma) and fractional coordinates.
Angles are radians inside tensors and degrees at the pymatgen boundary.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
import torch

from .crystal import Crystal, is_physical_cell  # noqa: F401  (public here too; is_physical_cell: its old home)
from .errors import (
    CellTooLargeWarning,
    CrystalInputError,
    DatasetError,
    DisorderedStructureError,
    EmptyStructureError,
    MalformedCIFError,
    NonFiniteCoordinatesError,
    SkippedStructuresWarning,
    UnknownSpeciesError,
)
from .geometry import lattice_matrix_np as lattice_matrix  # also public here: the numpy twin's old home
from .geometry import wrap_frac

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


@contextlib.contextmanager
def quiet_spglib():
    """Around a pymatgen / spglib symmetry call: spglib's own switch for its C-level warnings
    (``SPGLIB_WARNING=OFF``, read at each call) and Python warnings off, restored after.

    Without it, spglib writes lines such as "spglib: ssm_get_exact_positions failed." straight to
    stderr while it retries at smaller tolerances (the perov_5 perovskites, whose positions are
    distorted, trigger it when their conventional cells are built); the result is the same.
    """
    old = os.environ.get("SPGLIB_WARNING")
    os.environ["SPGLIB_WARNING"] = "OFF"
    try:
        with warnings.catch_warnings():  # spglib's deprecation chatter is not the user's business either
            warnings.simplefilter("ignore")
            yield
    finally:
        if old is None:
            os.environ.pop("SPGLIB_WARNING", None)
        else:
            os.environ["SPGLIB_WARNING"] = old


def crystal_from_structure(
    structure, id: str = "", conventional: bool = True, properties: dict | None = None
) -> Crystal:
    """Convert a pymatgen Structure into a `Crystal`, validating it.

    conventional=True (the paper's convention) first takes pymatgen's conventional standard
    cell; False keeps the cell as given. Fractional coordinates are wrapped into [0, 1).
    """
    label = f"structure {id!r}" if id else "structure"
    if len(structure) == 0:
        raise EmptyStructureError(f"{label} has no atoms; remove it from the input")
    if not structure.is_ordered:
        bad = next(s for s in structure if not s.is_ordered)
        raise DisorderedStructureError(
            f"{label} has partial occupancy or mixed species (site {bad.species_string} at "
            f"{np.round(bad.frac_coords, 4).tolist()}); NeSF needs ordered structures. Order it "
            "first (e.g. pymatgen's OrderDisorderedStructureTransformation) or drop it."
        )
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    params = np.asarray(structure.lattice.parameters, dtype=np.float64)
    if not (np.isfinite(frac).all() and np.isfinite(params).all()):
        raise NonFiniteCoordinatesError(
            f"{label} has NaN or infinite coordinates or lattice parameters; fix the source data"
        )
    if conventional:
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        try:
            with quiet_spglib():
                structure = SpacegroupAnalyzer(structure).get_conventional_standard_structure()
        except Exception as exc:  # spglib fails on degenerate cells
            raise CrystalInputError(
                f"{label}: could not build the conventional standard cell ({exc}); "
                "pass conventional=False to keep the cell as given"
            ) from exc
        frac = np.asarray(structure.frac_coords, dtype=np.float64)
        params = np.asarray(structure.lattice.parameters, dtype=np.float64)
    frac = wrap_frac(frac)
    frac[np.isclose(frac, 1.0, atol=1e-10)] = 0.0
    lengths = tuple(float(x) for x in params[:3])
    angles = tuple(float(x) for x in params[3:])
    positions = frac @ lattice_matrix(lengths, angles)
    numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    return Crystal(positions, numbers, lengths, angles, id=id, properties=dict(properties or {}))


@dataclass(frozen=True)
class SpeciesVocab:
    """Atomic number <-> class index (sorted atomic numbers, as the reference datasets)."""

    atomic_numbers: tuple[int, ...]

    @classmethod
    def from_crystals(cls, crystals: Iterable[Crystal]) -> "SpeciesVocab":
        zs: set[int] = set()
        for c in crystals:
            zs.update(int(z) for z in c.atomic_numbers)
        return cls(tuple(sorted(zs)))

    def __len__(self) -> int:
        return len(self.atomic_numbers)

    def encode(self, atomic_numbers: np.ndarray, id: str = "") -> np.ndarray:
        """Class indices for atomic numbers; `UnknownSpeciesError` names what is missing."""
        lut = {z: i for i, z in enumerate(self.atomic_numbers)}
        missing = sorted({int(z) for z in atomic_numbers} - lut.keys())
        if missing:
            from pymatgen.core import Element

            names = ", ".join(Element.from_Z(z).symbol for z in missing)
            where = f" in {id!r}" if id else ""
            raise UnknownSpeciesError(
                f"element(s) {names}{where} not in the model's species vocabulary "
                f"({len(self)} elements); retrain with data containing them or drop the structure"
            )
        return np.array([lut[int(z)] for z in atomic_numbers], dtype=np.int64)

    def decode(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.atomic_numbers, dtype=np.int64)[np.asarray(indices, dtype=np.int64)]


@dataclass(frozen=True)
class BoundingBox:
    """Axis-aligned box over every training atom position (Angstrom)."""

    min_angstrom: tuple[float, float, float]
    max_angstrom: tuple[float, float, float]

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal]) -> "BoundingBox":
        if not crystals:
            raise DatasetError("cannot compute a bounding box of an empty dataset")
        pos = np.concatenate([c.positions_angstrom for c in crystals], axis=0)
        return cls(tuple(pos.min(0).tolist()), tuple(pos.max(0).tolist()))

    def check(self, crystal: Crystal, tol_angstrom: float = 0.5) -> None:
        """Warn (`CellTooLargeWarning`) when atoms lie outside this training box."""
        lo = crystal.positions_angstrom.min(0)
        hi = crystal.positions_angstrom.max(0)
        if (lo < np.array(self.min_angstrom) - tol_angstrom).any() or (
            hi > np.array(self.max_angstrom) + tol_angstrom
        ).any():
            warnings.warn(
                f"{crystal.id or 'crystal'}: atoms span {np.round(lo, 2).tolist()} .. "
                f"{np.round(hi, 2).tolist()} A, beyond the training box "
                f"{np.round(self.min_angstrom, 2).tolist()} .. "
                f"{np.round(self.max_angstrom, 2).tolist()} A; decoding cannot place atoms "
                "outside the box",
                CellTooLargeWarning,
                stacklevel=3,
            )


@dataclass
class CrystalBatch:
    """B crystals with ragged atoms (no torch_geometric).

    positions: (N, 3) cartesian Angstrom, project frame.   species: (N,) class indices.
    batch: (N,) crystal index of every atom, sorted.       lengths: (B, 3) Angstrom.
    angles: (B, 3) radians.                                ids: B strings.
    """

    positions: torch.Tensor
    species: torch.Tensor
    batch: torch.Tensor
    lengths: torch.Tensor
    angles: torch.Tensor
    ids: list[str]

    @property
    def num_crystals(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def counts(self) -> torch.Tensor:
        """(B,) number of atoms per crystal."""
        return torch.bincount(self.batch, minlength=self.num_crystals)

    def to(self, device) -> "CrystalBatch":
        return CrystalBatch(
            self.positions.to(device),
            self.species.to(device),
            self.batch.to(device),
            self.lengths.to(device),
            self.angles.to(device),
            list(self.ids),
        )

    def select(self, rows: torch.Tensor) -> "CrystalBatch":
        """The crystals at `rows` (sorted, unique), as a new batch in that order."""
        rows = torch.unique(torch.as_tensor(rows, device=self.device))
        remap = torch.full((self.num_crystals,), -1, dtype=torch.long, device=self.device)
        remap[rows] = torch.arange(rows.shape[0], device=self.device)
        keep = remap[self.batch] >= 0
        return CrystalBatch(
            self.positions[keep], self.species[keep], remap[self.batch[keep]],
            self.lengths[rows], self.angles[rows], [self.ids[i] for i in rows.tolist()],
        )

    def padded_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Nmax, 3) positions and (B, Nmax) validity mask."""
        counts = self.counts()
        nmax = int(counts.max()) if counts.numel() else 0
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(self.batch.shape[0], device=self.device) - starts[self.batch]
        out = self.positions.new_zeros(self.num_crystals, nmax, 3)
        mask = torch.zeros(self.num_crystals, nmax, dtype=torch.bool, device=self.device)
        out[self.batch, slot] = self.positions
        mask[self.batch, slot] = True
        return out, mask

    @classmethod
    def from_crystals(
        cls,
        crystals: Sequence[Crystal],
        vocab: SpeciesVocab,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> "CrystalBatch":
        if len(crystals) == 0:
            raise DatasetError("cannot build a batch of zero crystals")
        pos = np.concatenate([c.positions_angstrom for c in crystals], axis=0)
        spec = np.concatenate([vocab.encode(c.atomic_numbers, c.id) for c in crystals])
        batch = np.repeat(np.arange(len(crystals)), [c.num_atoms for c in crystals])
        lengths = np.array([c.lengths_angstrom for c in crystals], dtype=np.float64)
        angles = np.radians(np.array([c.angles_deg for c in crystals], dtype=np.float64))
        t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
        return cls(
            t(pos, dtype), t(spec, torch.long), t(batch, torch.long),
            t(lengths, dtype), t(angles, dtype), [c.id for c in crystals],
        )

    @classmethod
    def from_structures(
        cls,
        structures: Sequence,
        vocab: SpeciesVocab | None = None,
        conventional: bool = True,
        ids: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple["CrystalBatch", SpeciesVocab]:
        """Batch pymatgen Structures; builds a vocabulary from them when none is given."""
        if ids is not None and len(ids) != len(structures):
            raise DatasetError(f"{len(structures)} structures but {len(ids)} ids; give one id per structure")
        ids = list(ids) if ids is not None else [str(i) for i in range(len(structures))]
        crystals = [crystal_from_structure(s, i, conventional) for s, i in zip(structures, ids)]
        vocab = vocab or SpeciesVocab.from_crystals(crystals)
        return cls.from_crystals(crystals, vocab, dtype=dtype), vocab

    def to_crystals(self, vocab: SpeciesVocab) -> list[Crystal]:
        pos = self.positions.detach().cpu().double().numpy()
        spec = self.species.detach().cpu().numpy()
        b = self.batch.detach().cpu().numpy()
        lengths = self.lengths.detach().cpu().double().numpy()
        angles = np.degrees(self.angles.detach().cpu().double().numpy())
        out = []
        for i in range(self.num_crystals):
            m = b == i
            out.append(
                Crystal(pos[m], vocab.decode(spec[m]), tuple(lengths[i].tolist()),
                        tuple(angles[i].tolist()), id=self.ids[i])
            )
        return out

    def to_structures(self, vocab: SpeciesVocab) -> list:
        """pymatgen Structures (angles back in degrees)."""
        return [c.to_structure() for c in self.to_crystals(vocab)]


# ----------------------------------------------------------------------------- readers


@dataclass
class ReadReport:
    """What a reader skipped (only with on_error='skip')."""

    read: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        reasons = Counter(r.split(":")[0] for _, r in self.skipped)
        parts = ", ".join(f"{n} {k}" for k, n in reasons.items())
        named = "; ".join(f"{label}: {reason}" for label, reason in self.skipped[:5])
        more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
        return (f"read {self.read}, skipped {len(self.skipped)}" + (f" ({parts})" if parts else "")
                + (f": {named}{more}" if named else ""))


def _collect(items, on_error: OnError, report: ReadReport) -> list[Crystal]:
    if on_error not in ("raise", "skip"):
        raise DatasetError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    crystals = []
    for label, make in items:
        try:
            crystals.append(make())
            report.read += 1
        except CrystalInputError as exc:
            if on_error == "raise":
                raise
            report.skipped.append((label, f"{type(exc).__name__}: {exc}"))
    if report.skipped:
        warnings.warn(report.summary(), SkippedStructuresWarning, stacklevel=3)
    return crystals


def _structure_blocks(text: str) -> list[tuple[str, str]]:
    """(name, CIF text) of each data block that holds atom sites, when the text has more than one;
    [] when it has one or none (then it is parsed whole). Two blocks of one name: an error, since
    pymatgen's reader would keep only the last."""
    headers = re.findall(r"(?im)^[ \t]*data_(\S*)", text)
    if len(headers) < 2:
        return []
    from pymatgen.io.cif import CifFile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = CifFile.from_str(text).data
    except Exception:
        return []  # unreadable: parsed whole, which names the problem
    if len(blocks) != len(headers):
        raise MalformedCIFError(f"{len(headers)} data blocks but {len(blocks)} distinct block names; give each "
                                "data_ block its own name")
    sites = [(name, str(b)) for name, b in blocks.items()
             if any(k.lower() in ("_atom_site_fract_x", "_atom_site_cartn_x") for k in b.data)]
    return sites if len(sites) > 1 else []


def _parse_one_cif(text: str, label: str):
    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(text, fmt="cif")
    except Exception as exc:
        raise _cif_problem(text, label, exc) from exc


def _parse_cif_blocks(text: str, label: str) -> list[tuple[str, object]]:
    """Every structure in a CIF text: [(block name, Structure)], the name '' when the text holds one."""
    if not text or not text.strip():
        raise MalformedCIFError(f"{label}: empty CIF text")
    try:
        blocks = _structure_blocks(text)
    except MalformedCIFError as exc:
        raise MalformedCIFError(f"{label}: {exc}") from None
    if not blocks:
        return [("", _parse_one_cif(text, label))]
    return [(name, _parse_one_cif(block, f"{label} block data_{name}")) for name, block in blocks]


def _parse_cif(text: str, label: str):
    """The one structure of a CIF text; more than one (several data blocks) is an error with the count."""
    blocks = _parse_cif_blocks(text, label)
    if len(blocks) > 1:
        raise MalformedCIFError(f"{label}: the CIF holds {len(blocks)} structures (data blocks "
                                f"{', '.join(n for n, _ in blocks[:5])}); give one structure per CSV row")
    return blocks[0][1]


def _cif_problem(text: str, label: str, exc: Exception) -> CrystalInputError:
    """The named error for a CIF pymatgen could not read, saying what is wrong where we can tell
    (no atom sites, non-finite coordinates) instead of pymatgen's internals."""
    try:
        from pymatgen.io.cif import CifFile

        with warnings.catch_warnings():  # pymatgen quotes whole lines back: megabytes for a one-line file
            warnings.simplefilter("ignore")
            blocks = CifFile.from_str(text).data.values()
    except ZeroDivisionError:  # pymatgen's reader on a loop with a header and no rows
        if "_atom_site_fract_x" in text or "_atom_site_cartn_x" in text.lower():
            return EmptyStructureError(f"{label}: the CIF's atom-site loop has no rows (an empty structure)")
        blocks = []
    except Exception:
        blocks = []
    for block in blocks:
        coords = [block.data.get(f"_atom_site_fract_{a}") for a in "xyz"]
        cell_ok = True
        for a in ("a", "b", "c"):
            try:
                float(str(block.data.get(f"_cell_length_{a}")).split("(")[0])
            except ValueError:
                cell_ok = False
        if cell_ok and (all(c is None for c in coords) or any(isinstance(c, list) and not c for c in coords)):
            return EmptyStructureError(f"{label}: the CIF has a cell but no atom sites (an empty structure)")
        for c in coords:
            for v in c if isinstance(c, list) else [c]:
                try:
                    bad = not math.isfinite(float(str(v).split("(")[0]))
                except ValueError:
                    bad = str(v).strip().lower() in ("nan", "inf", "-inf")
                if bad:
                    return NonFiniteCoordinatesError(f"{label}: the CIF has a non-finite atom coordinate ({v})")
    why = " ".join(str(exc).split())
    why = why if len(why) <= 200 else why[:197] + "..."
    return MalformedCIFError(f"{label}: could not parse CIF ({type(exc).__name__}: {why})")


def read_csv(
    path: str | Path,
    conventional: bool = True,
    on_error: OnError = "raise",
    limit: int | None = None,
    report: ReadReport | None = None,
) -> list[Crystal]:
    """Read a CSV with a `cif` column (other columns are kept as properties)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no CSV file at {path}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is not a column name
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "cif" not in reader.fieldnames:
                raise DatasetError(
                    f"{path} has no 'cif' column (columns: {reader.fieldnames}); "
                    "expected the layout material_id,...,cif"
                )
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from exc
    except csv.Error as exc:
        raise DatasetError(f"{path} is not a readable CSV ({exc}); save it as comma-separated UTF-8 text") from exc
    if not rows:
        raise DatasetError(f"{path} has a header but no rows: nothing to read")
    if limit is not None:
        rows = rows[:limit]

    def item(rownum: int, row: dict):
        rid = row.get("material_id") or row.get("id") or f"row{rownum}"
        label = f"{path.name} row {rownum} (id {rid})"
        props = {k: v for k, v in row.items() if k not in ("cif",)}

        def make():
            s = _parse_cif(row["cif"], label)
            try:
                return crystal_from_structure(s, rid, conventional, props)
            except CrystalInputError as exc:
                raise type(exc)(f"{label}: {exc}") from exc

        return label, make

    return _collect((item(i + 2, r) for i, r in enumerate(rows)), on_error, report or ReadReport())


def read_cif_folder(
    path: str | Path,
    conventional: bool = True,
    on_error: OnError = "raise",
    report: ReadReport | None = None,
    files: Sequence[Path] | None = None,
) -> list[Crystal]:
    """Read every `*.cif` in a folder (id = file stem), sorted by name; or just `files`."""
    path = Path(path)
    files = sorted(path.glob("*.cif")) if files is None else [Path(f) for f in files]
    if not files:
        raise DatasetError(f"no .cif files in {path}")

    def read(f: Path, label: str) -> str:
        try:
            return f.read_text()
        except UnicodeDecodeError as exc:
            raise MalformedCIFError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                    "save the CIF as UTF-8") from exc

    def items():
        for f in files:  # every data block of a file is a crystal: id `stem`, or `stem:block` for several
            label = f"{f.name}"
            try:
                blocks = _parse_cif_blocks(read(f, label), label)
            except CrystalInputError as exc:
                yield label, lambda exc=exc: _reraise(exc)
                continue
            for name, s in blocks:
                cid = f"{f.stem}:{name}" if len(blocks) > 1 else f.stem
                yield (f"{label} block data_{name}" if name else label,
                       lambda s=s, cid=cid: crystal_from_structure(s, cid, conventional))

    return _collect(items(), on_error, report or ReadReport())


def _reraise(exc: Exception):
    raise exc


def read_structures(
    structures: Sequence,
    ids: Sequence[str] | None = None,
    conventional: bool = True,
    on_error: OnError = "raise",
    report: ReadReport | None = None,
) -> list[Crystal]:
    """Convert a list of pymatgen Structures (`ids`: one per structure)."""
    if ids is not None and len(ids) != len(structures):
        raise DatasetError(f"{len(structures)} structures but {len(ids)} ids; give one id per structure "
                           "(or none: they are numbered)")
    ids = list(ids) if ids is not None else [str(i) for i in range(len(structures))]
    items = (
        (f"structure {i}", (lambda s=s, i=i: crystal_from_structure(s, i, conventional)))
        for s, i in zip(structures, ids)
    )
    return _collect(items, on_error, report or ReadReport())


def source_path(source: str | Path) -> Path | None:
    """The file or folder that `load_crystals(source)` reads (None: the embedded data, or a named
    dataset that is not on this machine), e.g. to check that no output overwrites it."""
    src = str(source)
    if Path(src).exists():
        return Path(src)
    if re.fullmatch(r"synthetic(?::(\d+))?", src):
        return None
    from .datasets import FILES, dataset_path

    if src in FILES:
        try:
            return dataset_path(src)
        except DatasetError:
            return None
    return Path(src)


def load_crystals(
    source: str | Path,
    split: str = "train",
    conventional: bool = True,
    on_error: OnError = "raise",
    limit: int | None = None,
    seed: int = 0,
) -> list[Crystal]:
    """One entry point for data: a CSV path, a CIF folder, a single .cif file, 'synthetic[:N]', or
    the name of a real dataset in `nesf_viz.datasets.FILES` ('lcs6_test', 'icsg3d_val', ...).

    For 'synthetic' the split ('train', 'val', 'test') selects a fixed 80/10/10 part. A named
    dataset is read from the data root (`DatasetUnavailable` when absent) with its cells as given
    (they are conventional cells in the project frame already; `conventional` is ignored).
    """
    if on_error not in ("raise", "skip"):  # a typo such as 'ignore' must not pass as skip
        raise DatasetError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"limit must be a positive integer (or None), got {limit!r}")
    src = str(source)
    # only the exact names are the embedded data: 'synthetic_mine.csv' is a file like any other
    embedded = re.fullmatch(r"synthetic(?::(\d+))?", src)
    if embedded and not Path(src).exists():
        from .synthetic import synthetic_split

        n = int(embedded.group(1)) if embedded.group(1) else None
        crystals = synthetic_split(split, n_total=n, seed=seed)
        return crystals[:limit] if limit is not None else crystals
    path = Path(src)
    if not path.exists():
        from .datasets import FILES, dataset_path

        if src in FILES and FILES[src].endswith(".csv"):  # a named real dataset (a local file wins)
            path, conventional = dataset_path(src), False
    if path.is_dir():
        out = read_cif_folder(path, conventional, on_error)
        return out[:limit] if limit is not None else out
    if path.suffix.lower() == ".cif" and path.is_file():
        out = read_cif_folder(path.parent, conventional, on_error, files=[path])
        return out[:limit] if limit is not None else out
    if path.suffix.lower() == ".csv":
        return read_csv(path, conventional, on_error, limit=limit)
    if not path.exists():
        raise DatasetError(f"{src}: no such file or folder (expected a CSV, a CIF folder, 'synthetic' or a dataset "
                           "name such as 'lcs6_test')")
    raise DatasetError(f"{src}: unsupported data source (expected a .csv file, a folder of .cif, or 'synthetic')")


def fetch_materials_project(ids: Sequence[str], api_key: str | None = None) -> list[Crystal]:
    """Download structures from the Materials Project (optional extra `mp`, needs a key)."""
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise DatasetError("Materials Project access needs the extra: pip install 'nesf_viz[mp]'") from exc
    with MPRester(api_key) as mpr:
        docs = mpr.materials.summary.search(material_ids=list(ids), fields=["material_id", "structure"])
    return read_structures([d.structure for d in docs], [str(d.material_id) for d in docs])


@dataclass(frozen=True)
class DataSource:
    """Where crystals come from and how they are read: a source `load_crystals` takes (a CSV, a
    CIF folder or file, 'synthetic[:N]', a dataset name) or crystals already loaded. The CLI's
    --data, --limit, --keep-cell and --skip-bad in one object."""

    data: str | Path | tuple[Crystal, ...]
    split: str = "test"
    limit: int | None = None
    conventional: bool = True
    skip_bad: bool = False

    @classmethod
    def of(cls, data, **options) -> "DataSource":
        """`data` as a source: a path or name, a sequence of crystals, or a DataSource (returned)."""
        if isinstance(data, DataSource):
            return data
        if not isinstance(data, (str, Path)):
            data = tuple(data)
        return cls(data, **options)

    def crystals(self) -> list[Crystal]:
        if isinstance(self.data, tuple):
            return list(self.data[: self.limit] if self.limit else self.data)
        return load_crystals(self.data, split=self.split, limit=self.limit, conventional=self.conventional,
                             on_error="skip" if self.skip_bad else "raise")

    @property
    def path(self) -> Path | None:
        """The file or folder read (None: crystals in memory, the embedded data)."""
        return None if isinstance(self.data, tuple) else source_path(self.data)

    @property
    def label(self) -> str:
        return f"{len(self.data)} crystals" if isinstance(self.data, tuple) else str(self.data)
