"""Decoding: fields -> crystals, the paper's five steps, batched over crystals and particles.

`decode` is the one entry point for a batch of crystals (or latents) and any `StructureFields`
(a NeSF model or `ExactFields`); `decode_crystals` decodes a list of crystals batch by batch
(sized to the memory budget) with a model or their exact fields, and `usable_crystals` checks
them against a model first. Both return a `DecodeResult`.

The steps themselves, each named as the paper names it, and their settings (`DecodeConfig`,
the presets `DECODERS`) live in `nesf_viz.particles`:

    1. lattice from ``fields.lattice(z)``                        (`predict_lattice`)
    2. particles on a grid over the training box + a margin      (`init_particles`)
    3. ``p <- p + f_p(p, z)``, ``num_moves`` times                (`move_particles`)
    4. score = squared norm of the last field vector, filter      (`score_particles`)
       greedy NMS; a big enough group is an atom                  (`cluster_particles`, `nesf_viz.nms`)
    5. species = majority vote of argmax f_s around each atom     (`vote_species`)

Shapes: B crystals, P particles per crystal, M = all particles of a batch (ragged, with a
crystal index (M,) sorted by crystal), A atoms, S species, D latent. Positions are Angstrom
in the project frame (see ``nesf_viz.data``).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import nn

from .data import BoundingBox, Crystal, CrystalBatch, SpeciesVocab
from .device import resolve_device
from .errors import CrystalInputError, DatasetError, ShapeError
from .fields import ExactFields, StructureFields
from .nms import NMSOutput, nms, nms_reference  # noqa: F401  (public through decode too)
from .particles import (  # noqa: F401  (the steps and their settings: public through decode too)
    ANGLE_RANGE_DEG,
    DECODERS,
    DecodeConfig,
    Particles,
    _emit,
    box_particles,
    check_particle_budget,
    cluster_particles,
    init_particles,
    length_range_angstrom,
    merge_identical,
    move_particles,
    particles_per_crystal,
    predict_lattice,
    score_particles,
    species_offsets,
    vote_species,
)

log = logging.getLogger(__name__)

__all__ = [
    "DECODERS",
    "DecodeConfig",
    "DecodeResult",
    "NMSOutput",
    "decode",
    "decode_crystals",
    "usable_crystals",
    "box_particles",
    "species_offsets",
    "nms",
    "nms_reference",
]


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class DecodeResult:
    """Decoded crystals (numpy, float64 positions in the project frame).

    positions_angstrom[i]: (A_i, 3); species[i]: (A_i,) class indices; atomic_numbers[i]:
    (A_i,); particles_per_atom[i]: (A_i,) NMS group sizes; lengths_angstrom (B, 3);
    angles_deg (B, 3); n_particles (B,) particles moved; timing_s: seconds per stage.
    """

    ids: tuple[str, ...]
    positions_angstrom: tuple[np.ndarray, ...]
    species: tuple[np.ndarray, ...]
    atomic_numbers: tuple[np.ndarray, ...]
    particles_per_atom: tuple[np.ndarray, ...]
    lengths_angstrom: np.ndarray
    angles_deg: np.ndarray
    n_particles: np.ndarray
    timing_s: dict[str, float]
    config: DecodeConfig = field(default_factory=DecodeConfig)
    interrupted: bool = False
    """True when a batch-by-batch decode was interrupted and this holds the batches done so far."""

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def concat(cls, results: Sequence["DecodeResult"]) -> "DecodeResult":
        """One result from several batches (timings summed; the first batch's config)."""
        if not results:
            raise ValueError("concat needs at least one DecodeResult")
        timing: dict[str, float] = {}
        for r in results:
            for k, v in r.timing_s.items():
                timing[k] = timing.get(k, 0.0) + v
        cat = lambda name: tuple(x for r in results for x in getattr(r, name))  # noqa: E731
        return cls(
            ids=cat("ids"),
            positions_angstrom=cat("positions_angstrom"),
            species=cat("species"),
            atomic_numbers=cat("atomic_numbers"),
            particles_per_atom=cat("particles_per_atom"),
            lengths_angstrom=np.concatenate([r.lengths_angstrom for r in results]),
            angles_deg=np.concatenate([r.angles_deg for r in results]),
            n_particles=np.concatenate([r.n_particles for r in results]),
            timing_s=timing,
            config=results[0].config,
        )

    @property
    def num_atoms(self) -> np.ndarray:
        """(B,) detected atoms per crystal."""
        return np.array([len(p) for p in self.positions_angstrom], dtype=np.int64)

    @property
    def n_no_atoms(self) -> int:
        """Crystals where no atom survived (their result is empty, not an error)."""
        return int((self.num_atoms == 0).sum())

    @property
    def structures_per_second(self) -> float:
        t = self.timing_s.get("total", 0.0)
        return len(self) / t if t > 0 else float("inf")

    def to_crystals(self) -> list[Crystal]:
        return [
            Crystal(
                self.positions_angstrom[i].copy(),
                self.atomic_numbers[i].copy(),
                tuple(float(x) for x in self.lengths_angstrom[i]),
                tuple(float(x) for x in self.angles_deg[i]),
                id=self.ids[i],
            )
            for i in range(len(self))
        ]

    def to_structures(self, strict: bool = True) -> list:
        """pymatgen Structures, lattice from `nesf_viz.data.lattice_matrix` (frame 'a along x,
        b in the xy plane'). strict=False gives None for a crystal whose predicted lattice has
        no volume instead of raising."""
        out = []
        for c in self.to_crystals():
            try:
                out.append(c.to_structure())
            except (CrystalInputError, np.linalg.LinAlgError, ValueError) as exc:
                if strict:
                    raise CrystalInputError(f"decoded crystal {c.id!r}: {exc}") from exc
                out.append(None)
        return out

    def to_csv(self, path: str | Path, append: bool = False) -> Path:
        """Write `material_id,cif` (pymatgen CifWriter). A crystal whose predicted lattice is
        impossible gets an empty cif and a warning. `append`: add rows to an existing file
        (its header is kept; a missing file is started)."""
        from pymatgen.io.cif import CifWriter

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        bad = []
        header = not (append and path.is_file())
        with path.open("a" if append else "w", newline="") as fh:
            w = csv.writer(fh)
            if header:
                w.writerow(["material_id", "cif"])
            for cid, s in zip(self.ids, self.to_structures(strict=False)):
                if s is None:
                    bad.append(cid)
                    w.writerow([cid, ""])
                else:
                    w.writerow([cid, str(CifWriter(s))])
        if bad:
            warnings.warn(f"{len(bad)} decoded crystal(s) have an impossible lattice and an empty "
                          f"cif in {path}: {bad[:5]}", stacklevel=2)
        return path


# ----------------------------------------------------------------------------- decode


def decode(
    fields: StructureFields,
    crystals: CrystalBatch | None = None,
    *,
    latents: torch.Tensor | None = None,
    box: BoundingBox,
    vocab: SpeciesVocab,
    config: DecodeConfig = DecodeConfig(),
    hooks: Sequence = (),
    progress: bool = False,
    ids: Sequence[str] | None = None,
) -> DecodeResult:
    """Decode crystals from any `StructureFields` (a NeSF model or `ExactFields`).

    Give `crystals` (latents = fields.latents(crystals)) or `latents` (B, D). An nn.Module runs
    in eval mode under no_grad and gets its previous mode back. Everything runs on the device
    of the latents; hooks see copies and cannot change the result. `ids` names the crystals
    (default: the batch's ids, or "0", "1", ... for latents). `progress` shows a tqdm bar over
    the moves.
    """
    if (crystals is None) == (latents is None):
        raise ValueError("decode: give exactly one of crystals or latents")
    module = fields if isinstance(fields, nn.Module) else None
    was_training = module.training if module is not None else False
    try:
        if module is not None:
            module.eval()
        with torch.no_grad():
            return _decode(fields, crystals, latents, box, vocab, config, tuple(hooks), progress, ids)
    finally:
        if module is not None:
            module.train(was_training)


class _Laps:
    """Seconds per decode stage (CUDA synchronised: kernels are asynchronous)."""

    def __init__(self) -> None:
        self.start = self.t = time.perf_counter()
        self.timing: dict[str, float] = {}
        self.device: torch.device | None = None

    def __call__(self, name: str) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        self.timing[name] = self.timing.get(name, 0.0) + (t1 - self.t)
        self.t = t1


def _latents(fields: StructureFields, crystals: CrystalBatch | None, z: torch.Tensor | None,
             ids: Sequence[str] | None) -> tuple[torch.Tensor, list[str]]:
    """The (B, D) latents and B crystal names of a decode call."""
    if z is None:
        z = fields.latents(crystals)
        ids = list(crystals.ids) if ids is None else list(ids)
    if z.ndim != 2:
        raise ShapeError(f"latents must be (B, D); got {tuple(z.shape)}")
    nb = z.shape[0]
    ids = [str(i) for i in range(nb)] if ids is None else [str(i) for i in ids]
    if len(ids) != nb:
        raise ShapeError(f"{len(ids)} ids for {nb} latents")
    return z, ids


def _decode(fields, crystals, z, box, vocab, cfg: DecodeConfig, hooks, progress, ids) -> DecodeResult:
    laps = _Laps()
    z, ids = _latents(fields, crystals, z, ids)
    nb, dev = z.shape[0], z.device
    laps.device = dev
    dt = z.dtype if z.is_floating_point() else torch.float32

    lengths, angles, lat_inv = predict_lattice(fields, z, box, ids, cfg, dt)  # 1. lattice
    _emit(hooks, "on_start", list(ids), cfg, lengths.cpu(), angles.cpu())
    laps("lattice")

    particles = init_particles(nb, box, cfg, lat_inv, dev, dt)  # 2. particles
    n_particles = torch.bincount(particles.index, minlength=nb)
    _emit(hooks, "on_particles_init", particles.pos, particles.index)
    laps("init")

    particles = move_particles(fields, z, particles, cfg, lat_inv, hooks, progress)  # 3. moves
    laps("move")

    score, kept = score_particles(particles, cfg)  # 4a. score
    _emit(hooks, "on_score", score, kept)
    laps("score")

    res = cluster_particles(particles, score, kept, nb, cfg, lat_inv)  # 4b. NMS
    _emit(hooks, "on_cluster", res.cluster, res.centres, res.counts, res.cluster_batch, res.is_atom)
    centres, atom_batch, atom_counts = res.centres[res.is_atom], res.cluster_batch[res.is_atom], res.counts[res.is_atom]
    laps("nms")

    votes, species = vote_species(fields, z, centres, atom_batch, cfg, len(vocab))  # 5. species
    _emit(hooks, "on_species", votes, species, atom_batch)
    laps("species")

    result = _result(ids, centres, species, atom_counts, atom_batch, vocab, lengths, angles, n_particles,
                     laps.timing, cfg)
    laps.timing["total"] = time.perf_counter() - laps.start
    _emit(hooks, "on_end", result)
    return result


def _result(ids: list[str], centres: torch.Tensor, species: torch.Tensor, atom_counts: torch.Tensor,
            atom_batch: torch.Tensor, vocab: SpeciesVocab, lengths: torch.Tensor, angles: torch.Tensor,
            n_particles: torch.Tensor, timing: dict[str, float], cfg: DecodeConfig) -> DecodeResult:
    """The atoms of a batch as a `DecodeResult` (numpy, per crystal)."""
    nb = len(ids)
    per = torch.bincount(atom_batch, minlength=nb).cpu().tolist()
    cpos = centres.detach().double().cpu().numpy()
    cspec = species.cpu().numpy()
    ccnt = atom_counts.cpu().numpy()
    splits = np.cumsum([0] + per)
    if cspec.size and int(cspec.max()) >= len(vocab):
        raise ShapeError(f"species field has class {int(cspec.max())} but the vocabulary only "
                         f"{len(vocab)}; decode with the model's own vocabulary")
    atomic = vocab.decode(cspec)
    return DecodeResult(
        ids=tuple(ids),
        positions_angstrom=tuple(cpos[splits[i] : splits[i + 1]] for i in range(nb)),
        species=tuple(cspec[splits[i] : splits[i + 1]] for i in range(nb)),
        atomic_numbers=tuple(atomic[splits[i] : splits[i + 1]] for i in range(nb)),
        particles_per_atom=tuple(ccnt[splits[i] : splits[i + 1]] for i in range(nb)),
        lengths_angstrom=lengths.detach().double().cpu().numpy(),
        angles_deg=np.degrees(angles.detach().double().cpu().numpy()),
        n_particles=n_particles.cpu().numpy(),
        timing_s=timing,
        config=cfg,
    )


# ----------------------------------------------------------------------------- many crystals


def decode_crystals(
    fields: Literal["exact"] | StructureFields,
    crystals: Sequence[Crystal],
    *,
    box: BoundingBox,
    vocab: SpeciesVocab,
    config: DecodeConfig = DecodeConfig(),
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    exact_periodic: bool | None = None,
    keep_partial: bool = False,
    on_batch: Callable[[Sequence[Crystal], DecodeResult], None] | None = None,
) -> DecodeResult:
    """Decode crystals batch by batch with a model (`fields` = a NeSF) or their exact fields.

    exact_periodic: periodic ground-truth fields (default: config.periodic).
    keep_partial: on Ctrl-C / Kernel > Interrupt, return the batches already decoded (the first
    len(result) crystals; `result.interrupted` is True) instead of losing them.
    on_batch(crystals, result): called after every batch with its crystals and their decode, to
    stream results out (written files survive even a killed process). The progress bar counts
    crystals, so its ETA is in crystals."""
    dev = resolve_device(device)
    per = check_particle_budget(1, box, config)  # one crystal must fit; batches are sized to the budget
    batch_size = max(1, min(batch_size, config.max_particles // max(per, 1)))
    batches = [crystals[i : i + batch_size] for i in range(0, len(crystals), batch_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(crystals), desc="decode", unit="crystal")
    if isinstance(fields, str) and fields != "exact":
        raise ValueError(f"fields must be 'exact' or a model, got {fields!r}")
    results = []
    try:
        for chunk in batches:
            batch = CrystalBatch.from_crystals(chunk, vocab, device=dev)
            if isinstance(fields, str):
                periodic = config.periodic if exact_periodic is None else exact_periodic
                f = ExactFields(batch, len(vocab), periodic=periodic)
            else:
                f = fields
            results.append(decode(f, batch, box=box, vocab=vocab, config=config))
            if on_batch is not None:
                on_batch(chunk, results[-1])
            if bar is not None:
                bar.update(len(chunk))
    except KeyboardInterrupt:
        if not keep_partial or not results:
            raise
        out = dataclasses.replace(DecodeResult.concat(results), interrupted=True)
        log.warning("interrupted: keeping the %d of %d crystals decoded so far", len(out), len(crystals))
        return out
    finally:
        if bar is not None:
            bar.close()
    return DecodeResult.concat(results)


def usable_crystals(crystals: Sequence[Crystal], vocab: SpeciesVocab, box: BoundingBox,
                    skip_bad: bool = False) -> list[Crystal]:
    """Check every crystal against a model's vocabulary and box before any decoding (fail fast).
    An unknown element raises `UnknownSpeciesError` naming the crystal, or with `skip_bad` the
    crystal is dropped and one `SkippedStructuresWarning` names what was skipped and why."""
    from .errors import SkippedStructuresWarning, UnknownSpeciesError

    kept, skipped = [], []
    for c in crystals:
        try:
            vocab.encode(c.atomic_numbers, c.id)
        except UnknownSpeciesError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc).split(" not in ")[0])
            continue
        box.check(c)
        kept.append(c)
    if skipped:
        more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(f"skipped {len(skipped)} of {len(crystals)} crystals with elements outside the model's "
                      f"vocabulary: {'; '.join(skipped[:5])}{more}", SkippedStructuresWarning, stacklevel=2)
    if not kept:
        raise DatasetError("no crystal left to decode: every one has elements outside the model's vocabulary")
    return kept
