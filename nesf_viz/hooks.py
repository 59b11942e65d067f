"""Decode observers: narrow callbacks, and a trajectory recorder for figures and sliders.

`decode` calls every hook with copies of its tensors, so a hook cannot change the result.
Event order: on_start, on_particles_init, on_move (steps 1..T, fewer with early stopping),
on_score, on_cluster, on_species, on_end. Particles are ragged: positions (M, 3) with a
crystal index (M,) sorted by crystal; a particle's number inside its crystal is its rank there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from .decode import DecodeConfig, DecodeResult

__all__ = ["DecodeHook", "TrajectoryRecorder", "ClusterView"]


class DecodeHook:
    """Base class: override what you need; every method is a no-op."""

    def on_start(self, ids: list[str], config: "DecodeConfig", lengths_angstrom: torch.Tensor,
                 angles_rad: torch.Tensor) -> None:
        """Predicted lattice (B, 3) of every crystal (angles in radians, as the fields give
        them), before any particle exists."""

    def on_particles_init(self, positions: torch.Tensor, index: torch.Tensor) -> None:
        """Initial particles (M, 3) and their crystal (M,)."""

    def on_move(self, step: int, positions: torch.Tensor, vectors: torch.Tensor,
                norms: torch.Tensor) -> None:
        """After move `step` (1-based): positions (M, 3), the move applied (M, 3) (zero for
        particles already stopped by early stopping) and its length (M,)."""

    def on_score(self, scores: torch.Tensor, kept_mask: torch.Tensor) -> None:
        """scores (M,): squared length of each particle's last field vector (A^2);
        kept_mask (M,): score <= threshold^2."""

    def on_cluster(self, cluster_id: torch.Tensor, centres: torch.Tensor, counts: torch.Tensor,
                   cluster_batch: torch.Tensor, is_atom: torch.Tensor) -> None:
        """NMS: cluster (K,) of every kept particle (in particle order) indexing centres (C, 3),
        counts (C,), cluster_batch (C,) and is_atom (C,)."""

    def on_species(self, votes: torch.Tensor, species: torch.Tensor, atom_batch: torch.Tensor) -> None:
        """votes (A, S) grid points voting for each class; species (A,) winner; atom_batch (A,)."""

    def on_end(self, result: "DecodeResult") -> None:
        """The finished result."""


@dataclass(frozen=True)
class ClusterView:
    """NMS outcome of one crystal, numpy. cluster_id (P,) per recorded particle (-1: not kept
    or dropped); centres (C, 3), counts (C,), is_atom (C,) per cluster (local numbering)."""

    cluster_id: np.ndarray
    centres: np.ndarray
    counts: np.ndarray
    is_atom: np.ndarray

    @property
    def atoms(self) -> np.ndarray:
        """(A, 3) centres of the clusters that became atoms."""
        return self.centres[self.is_atom]


class TrajectoryRecorder(DecodeHook):
    """Records particle trajectories on the CPU for figures and offline re-clustering.

    every: keep steps 0 (initial grid), every k-th move, and the last move made.
    max_particles: at most this many particles per crystal, a reproducible random subset
    (numpy Generator seeded with (seed, crystal)); None keeps all.
    Memory: crystals x kept steps x particles x 16 bytes.
    """

    def __init__(self, every: int = 1, max_particles: int | None = 2000, seed: int = 0):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = int(every)
        self.max_particles = max_particles
        self.seed = int(seed)
        self._reset()

    def _reset(self) -> None:
        self.ids: list[str] = []
        self.config = None
        self.lengths_angstrom = np.zeros((0, 3))
        self.angles_deg = np.zeros((0, 3))
        self._lengths = torch.zeros(0, 3)
        self._angles = torch.zeros(0, 3)
        self._select: list[np.ndarray] = []  # per crystal: global particle rows recorded
        self._local: list[np.ndarray] = []  # per crystal: particle numbers inside the crystal
        self._steps: list[int] = []
        self._pos: list[list[np.ndarray]] = []  # [step][crystal] (P, 3)
        self._norm: list[list[np.ndarray]] = []
        self._pending: tuple[int, list, list] | None = None
        self._final_pos: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._kept: list[np.ndarray] = []
        self._kept_global: np.ndarray = np.zeros(0, dtype=bool)
        self._clusters: list[ClusterView] = []

    # ---- hook events
    def on_start(self, ids, config, lengths_angstrom, angles_rad) -> None:
        self._reset()
        self.ids = list(ids)
        self.config = config
        # kept in the decoder's dtype so that recluster rebuilds exactly the same cell
        self._lengths = lengths_angstrom.detach().cpu().clone()
        self._angles = angles_rad.detach().cpu().clone()
        self.lengths_angstrom = self._lengths.double().numpy()
        self.angles_deg = np.degrees(self._angles.double().numpy())

    def on_particles_init(self, positions, index) -> None:
        idx = index.cpu().numpy()
        starts = np.searchsorted(idx, np.arange(len(self.ids)), "left")
        ends = np.searchsorted(idx, np.arange(len(self.ids)), "right")
        for b, (s, e) in enumerate(zip(starts, ends)):
            n = int(e - s)
            if self.max_particles is not None and n > self.max_particles:
                rng = np.random.default_rng((self.seed, b))
                local = np.sort(rng.choice(n, self.max_particles, replace=False))
            else:
                local = np.arange(n)
            self._local.append(local)
            self._select.append(s + local)
        self._record(0, positions, None)

    def on_move(self, step, positions, vectors, norms) -> None:
        if step % self.every == 0:
            self._record(step, positions, norms)
            self._pending = None
        else:  # kept aside in case it turns out to be the last move
            self._pending = (step, self._take(positions), self._take(norms))

    def on_score(self, scores, kept_mask) -> None:
        if self._pending is not None:
            step, p, n = self._pending
            self._steps.append(step)
            self._pos.append(p)
            self._norm.append(n)
            self._pending = None
        self._final_pos = [p for p in self._pos[-1]]
        self._scores = self._take(scores)
        self._kept = self._take(kept_mask)
        self._kept_global = kept_mask.cpu().numpy()

    def on_cluster(self, cluster_id, centres, counts, cluster_batch, is_atom) -> None:
        full = np.full(self._kept_global.shape[0], -1, dtype=np.int64)
        full[self._kept_global] = cluster_id.cpu().numpy()
        cb = cluster_batch.cpu().numpy()
        first = np.searchsorted(cb, np.arange(len(self.ids)), "left")
        cen, cnt, atom = centres.double().cpu().numpy(), counts.cpu().numpy(), is_atom.cpu().numpy()
        self._clusters = []
        for b, sel in enumerate(self._select):
            m = cb == b
            cid = full[sel]
            cid = np.where(cid >= 0, cid - first[b], -1)
            self._clusters.append(ClusterView(cid, cen[m], cnt[m], atom[m]))

    # ---- helpers
    def _take(self, t: torch.Tensor) -> list[np.ndarray]:
        a = t.detach().cpu().numpy()
        return [a[sel].copy() for sel in self._select]

    def _record(self, step: int, positions: torch.Tensor, norms: torch.Tensor | None) -> None:
        self._steps.append(int(step))
        self._pos.append(self._take(positions))
        if norms is None:
            self._norm.append([np.full(len(s), np.nan, dtype=np.float32) for s in self._select])
        else:
            self._norm.append(self._take(norms))

    def _check(self, crystal: int) -> int:
        if not self._select:
            raise RuntimeError("nothing recorded yet: pass the recorder to decode(..., hooks=[rec])")
        if not 0 <= crystal < len(self._select):
            raise IndexError(f"crystal {crystal} out of range (recorded {len(self._select)})")
        return crystal

    # ---- accessors (numpy, ready for figures)
    @property
    def steps(self) -> np.ndarray:
        """(T,) move numbers of the recorded rows (0 = initial grid)."""
        return np.asarray(self._steps, dtype=np.int64)

    def particle_numbers(self, crystal: int) -> np.ndarray:
        """(P,) which particles of the crystal were recorded (their rank in its grid)."""
        return self._local[self._check(crystal)]

    def positions(self, crystal: int) -> np.ndarray:
        """(T, P, 3) recorded positions, Angstrom."""
        c = self._check(crystal)
        return np.stack([row[c] for row in self._pos])

    def norms(self, crystal: int) -> np.ndarray:
        """(T, P) length of the move that led to each recorded row (NaN at step 0)."""
        c = self._check(crystal)
        return np.stack([row[c] for row in self._norm])

    def scores(self, crystal: int) -> np.ndarray:
        """(P,) squared length of each particle's last field vector (A^2)."""
        return self._scores[self._check(crystal)]

    def kept(self, crystal: int) -> np.ndarray:
        """(P,) score <= threshold^2."""
        return self._kept[self._check(crystal)]

    def clusters(self, crystal: int) -> ClusterView:
        """The decoder's NMS outcome for the recorded particles of a crystal."""
        return self._clusters[self._check(crystal)]

    def lattice(self, crystal: int) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (lengths A (3,), angles deg (3,))."""
        c = self._check(crystal)
        return self.lengths_angstrom[c], self.angles_deg[c]

    def recluster(
        self,
        crystal: int,
        score_threshold_angstrom: float | None = None,
        nms_radius_angstrom: float | None = None,
        nms_min_particles: int | None = None,
    ) -> ClusterView:
        """Score filter + NMS again on the recorded final positions and scores, no model.

        None takes the decoder's setting. With every particle recorded and the decoder's
        settings this reproduces its atoms; with a subsample the counts shrink accordingly."""
        from .geometry import lattice_and_inverse
        from .nms import nms

        c = self._check(crystal)
        cfg = self.config
        thr = cfg.score_threshold_angstrom if score_threshold_angstrom is None else score_threshold_angstrom
        rad = cfg.nms_radius_angstrom if nms_radius_angstrom is None else nms_radius_angstrom
        mnp = cfg.nms_min_particles if nms_min_particles is None else nms_min_particles
        pos = torch.from_numpy(self._final_pos[c])
        sc = torch.from_numpy(self._scores[c])
        kept = (sc <= thr**2) & torch.isfinite(pos).all(1)
        lattice = None
        if cfg.periodic:
            lattice = lattice_and_inverse(self._lengths, self._angles)[0][c : c + 1].to(pos.dtype)
        kidx = torch.nonzero(kept).squeeze(1)
        out = nms(pos[kidx], sc[kidx], torch.zeros(kidx.numel(), dtype=torch.long), 1, rad, mnp,
                  lattice=lattice, collapse_tolerance=cfg.nms_collapse_tolerance_angstrom)
        cid = np.full(pos.shape[0], -1, dtype=np.int64)
        cid[kidx.numpy()] = out.cluster.numpy()
        return ClusterView(cid, out.centres.double().numpy(), out.counts.numpy(), out.is_atom.numpy())
