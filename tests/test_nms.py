"""Batched NMS against its plain single-crystal loop (the decoder's step 4)."""

import numpy as np
import torch

from nesf_viz.geometry import lattice_matrices
from nesf_viz.nms import nms, nms_reference


def _random_nms_case(rng: np.random.Generator, n: int):
    k = int(rng.integers(1, 6))
    centres = rng.uniform(0, 3.0, (k, 3))
    pts = centres[rng.integers(0, k, n)] + rng.normal(0, rng.choice([0.0, 1e-5, 1e-3, 0.2]), (n, 3))
    dup = rng.random(n) < 0.3  # exact duplicates
    pts[dup] = pts[rng.integers(0, n, n)[dup]]
    scores = rng.uniform(0, 0.8, n)
    if rng.random() < 0.5:
        scores = np.round(scores, 1)  # many ties
    return torch.tensor(pts, dtype=torch.float32), torch.tensor(scores, dtype=torch.float32)


def test_fast_nms_equals_reference_on_random_inputs():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        nb = int(rng.integers(1, 4))
        parts = [_random_nms_case(rng, int(rng.integers(0, 40))) for _ in range(nb)]
        pts = torch.cat([p for p, _ in parts])
        sc = torch.cat([s for _, s in parts])
        bt = torch.cat([torch.full((len(p),), i) for i, (p, _) in enumerate(parts)])
        lat = None
        if seed % 3 == 0:  # periodic: small skewed cells make minimum images matter
            lengths = torch.tensor(rng.uniform(1.2, 8.0, (nb, 3)), dtype=torch.float32)
            angles = torch.deg2rad(torch.tensor(rng.uniform(75, 105, (nb, 3)), dtype=torch.float32))
            lat = lattice_matrices(lengths, angles)
        tol = [None, 1e-4, 0.05, 1e-4][seed % 4]
        out = nms(pts, sc, bt, nb, 0.5, 3, lattice=lat, collapse_tolerance=tol)
        start = 0
        for b, (p, s) in enumerate(parts):
            ref = nms_reference(p, s, 0.5, 3, lattice=None if lat is None else lat[b])
            m = out.cluster_batch == b
            first = int(m.nonzero()[0]) if m.any() else 0
            sel = slice(start, start + len(p))
            ctx = f"seed {seed} crystal {b} tol {tol} periodic {lat is not None}"
            assert torch.equal(out.cluster[sel] - first, ref.cluster), ctx
            assert torch.equal(out.counts[m], ref.counts), ctx
            assert torch.equal(out.seeds[m] - start, ref.seeds), ctx
            assert torch.equal(out.is_atom[m], ref.is_atom), ctx
            torch.testing.assert_close(out.centres[m], ref.centres, atol=1e-5, rtol=0, msg=ctx)
            start += len(p)


def test_collapse_never_changes_nms_even_when_groups_straddle_spheres():
    # A group of near-coincident points (1e-5 apart) put exactly on the radius of a seed.
    seed_pt = torch.tensor([[0.0, 0.0, 0.0]])
    ring = torch.tensor([[0.5, 0.0, 0.0], [0.49999, 0.0, 0.0], [0.500004, 0.0, 0.0]])
    pts = torch.cat([seed_pt, ring, ring + 0.00001]).float()
    sc = torch.tensor([0.0, 0.5, 0.3, 0.4, 0.5, 0.3, 0.4])
    for tol in (None, 1e-4, 1e-3):
        out = nms(pts, sc, torch.zeros(len(pts), dtype=torch.long), 1, 0.5, 1, collapse_tolerance=tol)
        ref = nms_reference(pts, sc, 0.5, 1)
        assert torch.equal(out.cluster, ref.cluster), tol


def test_nms_reference_follows_score_then_index():
    pts = torch.tensor([[0.0, 0, 0], [0.3, 0, 0], [0.6, 0, 0]])
    sc = torch.tensor([0.2, 0.1, 0.1])  # tie between 1 and 2: index 1 seeds first
    ref = nms_reference(pts, sc, 0.5, 1)
    assert ref.cluster.tolist() == [0, 0, 0] and ref.seeds.tolist() == [1]
    w = torch.softmax(-sc, 0)
    torch.testing.assert_close(ref.centres[0], w @ pts)


def test_multiplicity_equals_the_expanded_particles():
    # Each point standing for m identical particles gives the expanded run's clusters, seeds,
    # counts and (up to float64 rounding) centres.
    for seed in range(60):
        rng = np.random.default_rng(1000 + seed)
        nb = int(rng.integers(1, 4))
        parts = [_random_nms_case(rng, int(rng.integers(0, 30))) for _ in range(nb)]
        pts = torch.cat([p for p, _ in parts])
        sc = torch.cat([s for _, s in parts])
        bt = torch.cat([torch.full((len(p),), i) for i, (p, _) in enumerate(parts)])
        mult = torch.tensor(rng.integers(1, 5, len(pts)))
        tol = [None, 1e-4][seed % 2]
        out = nms(pts, sc, bt, nb, 0.5, 4, collapse_tolerance=tol, multiplicity=mult)
        ref = nms(pts.repeat_interleave(mult, 0), sc.repeat_interleave(mult), bt.repeat_interleave(mult), nb,
                  0.5, 4, collapse_tolerance=tol)
        first_copy = torch.cumsum(mult, 0) - mult
        ctx = f"seed {seed}"
        assert torch.equal(out.cluster.repeat_interleave(mult), ref.cluster), ctx
        assert torch.equal(first_copy[out.seeds], ref.seeds), ctx
        assert torch.equal(out.counts, ref.counts), ctx
        assert torch.equal(out.is_atom, ref.is_atom), ctx
        assert torch.equal(out.cluster_batch, ref.cluster_batch), ctx
        torch.testing.assert_close(out.centres, ref.centres, atol=1e-6, rtol=0, msg=ctx)
