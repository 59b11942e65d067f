"""Batched greedy non-max suppression (the decoder's step 4) and the plain loop it is tested against.

Shapes: K particles (sorted by crystal), `batch` (K,) crystal index, B crystals, C clusters.
`nms` is batched over crystals and bitwise equal to `nms_reference` run crystal by crystal
(tests/test_nms.py); particle groups merged by `collapse_tolerance` never change a decision.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .errors import ShapeError
from .geometry import min_image, sqnorm, wrap

log = logging.getLogger(__name__)

__all__ = ["NMSOutput", "nms", "nms_reference"]


class NMSOutput(NamedTuple):
    """Greedy NMS over particles of one or many crystals.

    cluster: (K,) cluster of every input particle, an index into the cluster arrays.
    Clusters are ordered by crystal, then by the order NMS formed them (seed order).
    """

    cluster: torch.Tensor
    centres: torch.Tensor  # (C, 3) softmax(-score) weighted means, Angstrom
    counts: torch.Tensor  # (C,) particles per cluster
    seeds: torch.Tensor  # (C,) input index of each cluster's seed particle
    cluster_batch: torch.Tensor  # (C,) crystal of each cluster
    is_atom: torch.Tensor  # (C,) counts >= min_particles


def _centres(
    points: torch.Tensor,
    scores: torch.Tensor,
    cluster: torch.Tensor,
    seeds: torch.Tensor,
    num_clusters: int,
    lattice: tuple[torch.Tensor, torch.Tensor] | None,
    batch: torch.Tensor | None,
    multiplicity: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(-score) weighted mean per cluster; weights exp(-(s - s_seed)) as F.softmax does
    (the seed has the lowest score of its cluster), times each point's multiplicity. Periodic:
    seed + mean min-image offset.

    Accumulated in float64: a float32 sum over thousands of particles on one fixed point
    drifts by ~1e-4 A (the reference's exact-field error of 2-3e-5 A comes from there)."""
    s64 = scores.double()
    w = torch.exp(-(s64 - s64[seeds][cluster]))
    if multiplicity is not None:
        w = w * multiplicity.double()
    wsum = torch.zeros(num_clusters, dtype=torch.float64, device=points.device).index_add_(0, cluster, w)
    if lattice is None:
        x = points.double()
    else:
        lat, inv = lattice[0][batch], lattice[1][batch]
        x = min_image(points - points[seeds][cluster], lat, inv).double()
    acc = torch.zeros(num_clusters, 3, dtype=torch.float64, device=points.device)
    acc.index_add_(0, cluster, w[:, None] * x)
    centre = (acc / wsum[:, None]).to(points.dtype)
    if lattice is not None:
        seed_batch = batch[seeds]
        centre = wrap(points[seeds] + centre, lattice[0][seed_batch], lattice[1][seed_batch])
    return centre


def nms_reference(
    points: torch.Tensor,
    scores: torch.Tensor,
    radius: float,
    min_particles: int,
    lattice: torch.Tensor | None = None,
) -> NMSOutput:
    """Plain greedy NMS of one crystal, written to be obviously right (slow).

    Repeatedly: the remaining particle with the lowest (score, index) is the seed; every
    remaining particle with squared distance < radius^2 (minimum image when `lattice` (3, 3)
    is given) joins its cluster and leaves the pool."""
    n = points.shape[0]
    r2 = radius**2
    lat_inv = None if lattice is None else (lattice, torch.linalg.inv(lattice.double()).to(lattice.dtype))
    order = sorted(range(n), key=lambda i: (float(scores[i]), i))
    remaining = list(order)
    cluster = torch.full((n,), -1, dtype=torch.long)
    seeds, members_list = [], []
    while remaining:
        seed = remaining[0]
        d = points[remaining] - points[seed]
        if lat_inv is not None:
            d = min_image(d, *lat_inv)
        inside = (sqnorm(d) < r2).tolist()
        members = [i for i, keep in zip(remaining, inside) if keep]
        remaining = [i for i, keep in zip(remaining, inside) if not keep]
        cluster[members] = len(seeds)
        seeds.append(seed)
        members_list.append(members)
    centres = []
    for seed, members in zip(seeds, members_list):
        weights = F.softmax(-scores[members].double(), dim=0)  # float64 as in `nms`
        if lat_inv is None:
            centres.append((weights @ points[members].double()).to(points.dtype))
        else:
            off = (weights @ min_image(points[members] - points[seed], *lat_inv).double()).to(points.dtype)
            centres.append(wrap(points[seed] + off, *lat_inv))
    counts = torch.tensor([len(m) for m in members_list], dtype=torch.long)
    return NMSOutput(
        cluster=cluster,
        centres=torch.stack(centres) if centres else points.new_zeros(0, 3),
        counts=counts,
        seeds=torch.tensor(seeds, dtype=torch.long),
        cluster_batch=torch.zeros(len(seeds), dtype=torch.long),
        is_atom=counts >= min_particles,
    )


def _greedy_rounds(
    reps: torch.Tensor,
    rho: torch.Tensor,
    valid: torch.Tensor,
    radius: float,
    lattice: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS on padded, key-sorted representatives (B, K, 3), one seed per crystal per
    round, vectorized over crystals. Returns the local cluster of every slot (B, K) (-1 for
    padding) and a (B,) flag: some group of spread rho could straddle a seed's sphere."""
    nb, k = valid.shape
    local = torch.full((nb, k), -1, dtype=torch.long, device=reps.device)
    ambiguous = torch.zeros(nb, dtype=torch.bool, device=reps.device)
    remaining = valid.clone()
    r2 = radius**2
    spread = bool((rho > 0).any())
    # Float slack for the group test: covers rounding in the per-particle distances.
    finite = reps[valid]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    slack = 16 * torch.finfo(reps.dtype).eps * (1.0 + scale)
    t = 0
    rows = torch.arange(nb, device=reps.device)
    while True:
        rows = rows[remaining[rows].any(1)]
        if rows.numel() == 0:
            break
        rem = remaining[rows]
        seed = rem.to(torch.uint8).argmax(1)  # first remaining slot = lowest (score, index)
        p = reps[rows]
        d = p - p[torch.arange(rows.numel(), device=reps.device), seed][:, None, :]
        if lattice is not None:
            d = min_image(d, lattice[0][rows][:, None], lattice[1][rows][:, None])
        d2 = sqnorm(d)
        take = (d2 < r2) & rem
        if spread:
            dist, rr = torch.sqrt(d2), rho[rows]
            straddle = rem & (rr > 0) & (dist + rr >= radius - slack) & (dist - rr <= radius + slack)
            ambiguous[rows] |= straddle.any(1)
        local[rows] = torch.where(take, torch.full_like(seed[:, None], t), local[rows])
        remaining[rows] = rem & ~take
        t += 1
    return local, ambiguous


def _row_groups(keys: torch.Tensor) -> torch.Tensor:
    """Group id of every row of an integer (n, k) tensor (equal rows, equal id): k stable
    sorts (one when the columns pack into one int64), much faster than torch.unique(dim=0)."""
    lo = keys.min(0).values
    span = (keys.max(0).values - lo + 1).tolist()
    if math.prod(span) < 2**62:
        packed = torch.zeros(keys.shape[0], dtype=torch.long, device=keys.device)
        for col, width in enumerate(span):
            packed = packed * width + (keys[:, col] - lo[col])
        perm = torch.sort(packed).indices
    else:
        perm = torch.arange(keys.shape[0], device=keys.device)
        for col in reversed(range(keys.shape[1])):
            perm = perm[torch.sort(keys[perm, col], stable=True).indices]
    ks = keys[perm]
    new = torch.ones(keys.shape[0], dtype=torch.long, device=keys.device)
    new[1:] = (ks[1:] != ks[:-1]).any(1).long()
    inv = torch.empty_like(perm)
    inv[perm] = torch.cumsum(new, 0) - 1
    return inv


def _pad_by_crystal(batch: torch.Tensor, nb: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Slot (row, column) of items sorted by crystal, and the padded width."""
    counts = torch.bincount(batch, minlength=nb)
    starts = torch.cumsum(counts, 0) - counts
    col = torch.arange(batch.numel(), device=batch.device) - starts[batch]
    return batch, col, int(counts.max()) if counts.numel() else 0


def nms(
    points: torch.Tensor,
    scores: torch.Tensor,
    batch: torch.Tensor,
    num_crystals: int,
    radius: float,
    min_particles: int,
    lattice: torch.Tensor | None = None,
    collapse_tolerance: float | None = 1e-4,
    multiplicity: torch.Tensor | None = None,
) -> NMSOutput:
    """Exact greedy NMS of many crystals at once (same result as `nms_reference` per crystal).

    points (K, 3), scores (K,), batch (K,) crystal of each particle, sorted; ties in score are
    broken by the particle's position in the input. lattice (B, 3, 3) switches to minimum-image
    distances.

    Speed-up, exact by construction: particles in the same cube of side `collapse_tolerance`
    (after 64 moves particles sit on the same fixed point) form a group represented by its
    lowest-(score, index) member ("rep"), with spread rho = max member distance from the rep.
    Greedy NMS then runs on reps. Proof sketch: if in every round each remaining group lies
    wholly inside (d + rho < r) or wholly outside (d - rho >= r) the seed's sphere, the pool
    is always a union of whole groups, its lowest particle is the lowest rep, and every member
    of a group is taken iff its rep is: the particle-level run makes identical choices. Groups
    whose members are bitwise equal (rho = 0) meet the condition trivially (same float
    arithmetic). A crystal where some group might straddle a sphere (within float slack) is
    rerun particle by particle. Centres and counts are then computed per particle.

    multiplicity (K,) long: each point stands for that many bitwise-identical particles (same
    crystal, position and score), as the decoder merges them for pointwise fields. The result
    is the one of the expanded input with each point's copies in a row at its place: same
    clusters and seeds (as point indices), counts summing multiplicities, centres weighted by
    them (equal up to float64 rounding in the sum). tests/test_nms.py checks it.
    """
    if points.ndim != 2 or points.shape[1] != 3 or scores.shape != points.shape[:1] or batch.shape != scores.shape:
        raise ShapeError(f"nms takes points (K, 3), scores (K,), batch (K,); got {tuple(points.shape)}, "
                         f"{tuple(scores.shape)}, {tuple(batch.shape)}")
    if multiplicity is not None and multiplicity.shape != scores.shape:
        raise ShapeError(f"nms: multiplicity must be (K,) like scores; got {tuple(multiplicity.shape)}")
    dev, kk = points.device, points.shape[0]
    lat_inv = None
    if lattice is not None:
        inv, info = torch.linalg.inv_ex(lattice.double())
        inv = torch.where((info != 0)[:, None, None], torch.full_like(inv, float("nan")), inv)
        lat_inv = (lattice.to(points.dtype), inv.to(points.dtype))
    if kk == 0:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return NMSOutput(e, points.new_zeros(0, 3), e, e, e, e.bool())

    # Key order (crystal, score, index): stable sorts, the later one on the major key.
    o1 = torch.sort(scores, stable=True).indices
    order = o1[torch.sort(batch[o1], stable=True).indices]
    local = _local_clusters(points[order], batch[order], num_crystals, radius, lat_inv, collapse_tolerance)
    return _clusters_of(points, scores, batch, order, local, num_crystals, min_particles, lat_inv, multiplicity)


def _cluster_sorted(sp: torch.Tensor, sb: torch.Tensor, sel: torch.Tensor | None, tol: float | None,
                    num_crystals: int, radius: float, lat_inv) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster (local id) per key-sorted particle in `sel` (or all) and per-crystal ambiguity:
    particles in the same cube of side `tol` run greedy NMS as one group (None: one by one)."""
    dev, dtype = sp.device, sp.dtype
    idx = torch.arange(sp.shape[0], device=dev) if sel is None else sel
    p, b = sp[idx], sb[idx]
    if tol is None:
        group = torch.arange(idx.numel(), device=dev)
        rep_of = group
        rho = torch.zeros(idx.numel(), dtype=dtype, device=dev)
    else:
        group, rep_of, rho = _groups(p, b, tol, lat_inv)
    rb = b[rep_of]
    row, col, width = _pad_by_crystal(rb, num_crystals)
    reps = sp.new_zeros(num_crystals, width, 3)
    reps[row, col] = p[rep_of]
    rpad = sp.new_zeros(num_crystals, width)
    rpad[row, col] = rho
    valid = torch.zeros(num_crystals, width, dtype=torch.bool, device=dev)
    valid[row, col] = True
    local, amb = _greedy_rounds(reps, rpad, valid, radius, lat_inv)
    return local[row, col][group], amb


def _groups(p: torch.Tensor, b: torch.Tensor, tol: float, lat_inv) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Particles (key-sorted) of one crystal and one cube of side `tol` as a group: the group of
    every particle, numbered in key order of its rep (lowest (score, index) member), the rep of
    every group, and its spread rho (largest member distance from the rep)."""
    dev = p.device
    inv = _row_groups(torch.cat([b[:, None], torch.floor(p / tol).long()], 1))
    ng = int(inv.max()) + 1
    pos = torch.arange(p.shape[0], device=dev)
    first = torch.full((ng,), p.shape[0], dtype=torch.long, device=dev)
    first = first.scatter_reduce(0, inv, pos, "amin")
    # renumber groups in key order of their rep, so groups are sorted like particles
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(ng, device=dev)
    group = rank[inv]
    rep_of = torch.sort(first).values  # rep (position in `idx`) of each renumbered group
    d = p - p[rep_of[group]]
    if lat_inv is not None:
        d = min_image(d, lat_inv[0][b], lat_inv[1][b])
    rho = torch.zeros(ng, dtype=p.dtype, device=dev).scatter_reduce(0, group, torch.sqrt(sqnorm(d)), "amax")
    return group, rep_of, rho


def _local_clusters(sp: torch.Tensor, sb: torch.Tensor, num_crystals: int, radius: float, lat_inv,
                    collapse_tolerance: float | None) -> torch.Tensor:
    """(K,) cluster of every key-sorted particle, numbered per crystal in seed order: by groups
    of `collapse_tolerance`, with every crystal where a group might straddle a sphere rerun
    particle by particle."""
    if collapse_tolerance is None:
        return _cluster_sorted(sp, sb, None, None, num_crystals, radius, lat_inv)[0]
    local, amb = _cluster_sorted(sp, sb, None, float(collapse_tolerance), num_crystals, radius, lat_inv)
    if lat_inv is not None:
        # Minimum image by rounding keeps the group argument only when every cell height
        # exceeds the sphere's diameter (a displacement with a fractional part near 1/2 is
        # then longer than the radius whichever image rounding picks).
        heights = (1.0 / torch.linalg.norm(lat_inv[1].transpose(1, 2), dim=2)).min(1).values
        amb |= ~(heights > 2 * (radius + 4 * float(collapse_tolerance)) + 1e-3)
    if bool(amb.any()):
        redo = torch.nonzero(amb[sb]).squeeze(1)
        log.debug("nms: %d crystal(s) rerun particle by particle", int(amb.sum()))
        local[redo], _ = _cluster_sorted(sp, sb, redo, None, num_crystals, radius, lat_inv)
    return local


def _clusters_of(points: torch.Tensor, scores: torch.Tensor, batch: torch.Tensor, order: torch.Tensor,
                 local: torch.Tensor, num_crystals: int, min_particles: int, lat_inv,
                 multiplicity: torch.Tensor | None) -> NMSOutput:
    """The `NMSOutput` of particles in input order from their per-crystal (local) clusters in
    key order: global cluster ids crystal-major then seed order, seeds, counts, centres."""
    dev, kk = points.device, points.shape[0]
    sb = batch[order]
    ncl = torch.zeros(num_crystals, dtype=torch.long, device=dev).scatter_reduce(
        0, sb, local + 1, "amax"
    )
    offsets = torch.cumsum(ncl, 0) - ncl
    cl_sorted = offsets[sb] + local
    c = int(ncl.sum())
    pos = torch.arange(kk, device=dev)
    seed_sorted = torch.full((c,), kk, dtype=torch.long, device=dev).scatter_reduce(0, cl_sorted, pos, "amin")
    cluster = torch.empty_like(cl_sorted)
    cluster[order] = cl_sorted
    seeds = order[seed_sorted]
    if multiplicity is None:
        counts = torch.bincount(cluster, minlength=c)
    else:
        counts = torch.zeros(c, dtype=torch.long, device=dev).index_add_(0, cluster, multiplicity.long())
    centres = _centres(points, scores, cluster, seeds, c, lat_inv, batch, multiplicity)
    return NMSOutput(cluster, centres, counts, seeds, batch[seeds], counts >= min_particles)
