"""Tests for nesf_viz.viz.widgets: moving controls programmatically changes the figures."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget", reason="go.FigureWidget needs anywidget (plotly >= 6)")

from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab  # noqa: E402
from nesf_viz.decode import DecodeConfig, decode  # noqa: E402
from nesf_viz.errors import CheckpointError  # noqa: E402
from nesf_viz.fields import ExactFields  # noqa: E402
from nesf_viz.hooks import TrajectoryRecorder  # noqa: E402
from nesf_viz.viz import widgets  # noqa: E402
from nesf_viz.viz.figures import field_slice_figure  # noqa: E402

from .conftest import random_crystals  # noqa: E402
from .test_viz_compute import tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def recorded():
    rng = np.random.default_rng(7)
    crystals = random_crystals(rng, 2, max_atoms=5)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    fields = ExactFields(batch, len(vocab))
    rec = TrajectoryRecorder(max_particles=400)
    cfg = DecodeConfig(grid_step_angstrom=0.5, num_moves=6)
    res = decode(fields, batch, box=BoundingBox.from_crystals(crystals), vocab=vocab, config=cfg,
                 hooks=[rec])
    return rec, res, crystals, vocab, fields


def _trace(fig, name_start):
    return next(t for t in fig.data if (t.name or "").startswith(name_start))


def _xyz(trace):
    return np.column_stack([np.asarray(trace[c], dtype=float) for c in "xyz"])


def test_decode_explorer_step_slider_moves_particles(recorded):
    rec, res, crystals, _, _ = recorded
    ex = widgets.DecodeExplorer(rec, crystals, res)
    assert ex.step.value == len(rec.steps) - 1
    before = _xyz(_trace(ex.figure, "clustered"))
    ex.step.value = 0
    after = _xyz(_trace(ex.figure, "clustered"))
    assert before.shape == after.shape and not np.allclose(before, after)
    # move 0 draws the particles on their initial grid, in the same (cluster) order
    grid0 = rec.positions(0)[0]
    good = rec.kept(0) & (ex.clusters.cluster_id >= 0)
    np.testing.assert_allclose(after, grid0[good])
    assert "move 0" in ex.figure.layout.title.text
    assert ex.last_update_s > 0


def test_decode_explorer_recluster_matches_direct_call(recorded):
    rec, res, crystals, _, _ = recorded
    ex = widgets.DecodeExplorer(rec, crystals, res)
    n0 = len(_trace(ex.figure, "cluster centres").x)
    ex.radius.value = 1.3
    ex.threshold.value = 0.4
    ex.min_particles.value = 3
    direct = rec.recluster(0, 0.4, 1.3, 3)
    np.testing.assert_array_equal(ex.clusters.cluster_id, direct.cluster_id)
    np.testing.assert_allclose(ex.clusters.centres, direct.centres)
    np.testing.assert_array_equal(ex.clusters.counts, direct.counts)
    np.testing.assert_array_equal(ex.clusters.is_atom, direct.is_atom)
    centres = _xyz(_trace(ex.figure, "cluster centres"))
    np.testing.assert_allclose(centres, direct.centres)
    assert _trace(ex.figure, "NMS radius").name == "NMS radius 1.3 Å"
    assert f"{int(direct.is_atom.sum())} atoms" in ex.status.value
    assert n0 == len(direct.centres)  # exact fields: every particle lands on its atom
    # a higher minimum drops small clusters from the atoms
    ex.min_particles.value = 50
    small = rec.recluster(0, 0.4, 1.3, 50)
    assert int(small.is_atom.sum()) < int(direct.is_atom.sum())
    assert f"{int(small.is_atom.sum())} atoms" in ex.status.value


def test_decode_explorer_toggles_and_crystal(recorded):
    rec, res, crystals, _, _ = recorded
    ex = widgets.DecodeExplorer(rec, crystals, res)
    names = [t.name for t in ex.figure.data]
    assert "true atoms" in names
    ex.show_atoms.value = False
    assert "true atoms" not in [t.name for t in ex.figure.data]
    ex.step.value = 0
    ex.show_vectors.value = True
    vec = _trace(ex.figure, "field vector")
    assert len(vec.x) > 0
    ex.crystal.value = 1
    np.testing.assert_array_equal(ex.clusters.cluster_id, rec.recluster(1, 0.9, 0.5, 10).cluster_id)
    assert rec.ids[1] in ex.figure.layout.title.text
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id


def test_decode_explorer_needs_a_recording():
    with pytest.raises(ValueError, match="recorder"):
        widgets.DecodeExplorer(TrajectoryRecorder())


def test_field_explorer_offset_plane_and_species(recorded):
    _, _, crystals, vocab, fields = recorded
    fe = widgets.FieldExplorer(fields, fields.latents(), crystals, vocab, step_angstrom=0.25)
    heat = np.array(fe.figure.data[0].z, dtype=float)
    lo, hi = fe.offset.min, fe.offset.max
    assert hi > lo
    fe.offset.value = round((lo + hi) / 2, 2)
    heat2 = np.array(fe.figure.data[0].z, dtype=float)
    assert heat.shape == heat2.shape and not np.allclose(heat, heat2)
    fe.plane.value = "yz"
    assert fe.figure.layout.xaxis.title.text == "y (Å)"
    assert fe.figure.layout.yaxis.title.text == "z (Å)"
    fe.kind.value = "species field"
    assert fe.current_figure is fe.species_figure and fe.box.children == (fe.species_figure,)
    assert fe.species_figure.data[0].type == "heatmap"
    fe.offset.value = fe.offset.min
    fe.kind.value = "position field"
    assert fe.box.children == (fe.figure,)


def test_field_explorer_on_a_learned_model(recorded):
    _, _, crystals, vocab, _ = recorded
    model = tiny_model(len(vocab)).double()
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    with torch.no_grad():
        z = model.eval().latents(batch)
    fe = widgets.FieldExplorer(model, z, batch, vocab, step_angstrom=0.4)
    fe.crystal.value = 1
    assert fe.figure.data[0].type == "heatmap"
    assert "Position field" in fe.figure.layout.title.text


def test_latent_interpolator_slider(recorded):
    _, _, crystals, vocab, _ = recorded
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    fields = ExactFields(batch, len(vocab))
    li = widgets.LatentInterpolator(fields, batch, BoundingBox.from_crystals(crystals), vocab,
                                    steps=3, config=DecodeConfig(grid_step_angstrom=0.5,
                                                                 num_moves=6))
    first = li.figure.layout.title.text
    assert first.startswith("t = 0.00")
    li.step.value = 2
    assert li.figure.layout.title.text.startswith("t = 1.00")
    assert li.path_figure.layout.shapes[0].x0 == 1.0
    # exact fields: the latents are the crystals' rows, so the ends decode to the crystals themselves
    counts = list(li.data.atom_counts)
    assert counts[0] == crystals[0].num_atoms and counts[-1] == crystals[1].num_atoms
    drawn = sum(len(t.x) for t in li.figure.data if t.type == "scatter3d" and t.x is not None)
    assert drawn > 0  # the widget's figure holds points, not empty axes
    assert li.figure.layout.title.text.endswith(f"{crystals[1].num_atoms} atoms")


def test_training_panel_draws_every_step_and_stops_cleanly(synthetic_small, tmp_path):
    from nesf_viz.train_config import TrainConfig

    tr, va = synthetic_small["train"][:16], synthetic_small["val"][:8]
    panel = widgets.TrainingPanel(refresh_seconds=0.0)
    assert panel.stop_button.disabled and len(panel.figure.data) == 1  # the (empty) step trace
    run = panel.run(tr, va, tmp_path / "a", TrainConfig(epochs=2, batch_size=8, device="cpu"))
    assert run.stopped_because == "epochs done" and run.history["epoch"] == [1, 2]
    steps = next(t for t in panel.figure.data if t.meta == {"key": "steps"})
    assert list(steps.x) == [0.5, 1.0, 1.5, 2.0] and all(y > 0 for y in steps.y)
    val = next(t for t in panel.figure.data if t.meta == {"key": "val_loss"})
    assert list(val.x) == [1, 2]
    assert "epoch 2" in panel.figure.layout.title.text and panel.status.value.startswith("<b>Done</b>: epochs done")
    assert panel.stop_button.label == "Done" and panel.stop_button.disabled
    assert panel.stop_button.kernel_id == ""  # no Jupyter kernel here: the button says to use Kernel > Interrupt

    # stop() from code during epoch 2: ends after the step, the result is last.pt's epoch 1, and
    # the panel says so (the button's interrupt takes the Ctrl-C path, tests/test_browser.py)
    def click_in_epoch_2(report):
        if report.epoch > 1:
            panel.stop()

    run = panel.run(tr, va, tmp_path / "b", TrainConfig(epochs=6, batch_size=8, device="cpu"),
                    step_callbacks=[click_in_epoch_2])
    assert run.stopped_because.startswith("stopped by the user after epoch 1")
    assert panel.stop_button.label == "Stopped" and panel.status.value.startswith("<b>Stopped</b>: stopped by the user")

    # what training raises reaches the caller, and the panel says it
    with pytest.raises(CheckpointError, match="already holds a training run"):
        panel.run(tr, va, tmp_path / "a", TrainConfig(epochs=1, batch_size=8, device="cpu"))
    assert panel.status.value.startswith("<b>Failed</b>: ") and "already holds a training run" in panel.status.value


def test_view_figure_passes_only_accepted_fields(recorded):
    from nesf_viz.viz import compute

    _, _, _, vocab, fields = recorded
    s = compute.field_slice(fields, fields.latents(), 0, step_angstrom=0.5, vocab=vocab)
    fig = s.figure(title="t")  # field_slice_figure has no `vectors` or `points` parameter
    assert fig.layout.title.text == "t" and fig.data[0].type == "heatmap"
    same = s.figure(field_slice_figure, title="t")
    assert same.to_json() == fig.to_json()
    grid = compute.slice_grid(fields, fields.latents(), 0, step_angstrom=0.5)
    with pytest.raises(TypeError, match="no figure of its own"):
        grid.figure()


def test_decode_explorer_fast_step_update_equals_a_full_redraw(recorded):
    rec, res, crystals, _, _ = recorded
    ex = widgets.DecodeExplorer(rec, crystals, res)
    ex.show_vectors.value = True
    ex.threshold.value = 0.5
    for t in (3, 0, len(rec.steps) - 1):
        ex.step.value = t
        full = ex._figure()
        assert [tr.name for tr in ex.figure.data] == [tr.name for tr in full.data]
        for a, b in zip(ex.figure.data, full.data):
            if a.type == "scatter3d":
                np.testing.assert_array_equal(_xyz(a), _xyz(b))
        assert ex.figure.layout.title.text == full.layout.title.text


def test_decode_explorer_says_where_its_nms_sliders_start_to_matter(recorded):
    import re

    rec, res, crystals, _, _ = recorded
    ex = widgets.DecodeExplorer(rec, crystals, res)
    n0 = int(ex.clusters.is_atom.sum())
    m = re.search(r"radius above about ([\d.]+) Å merges.*min particles above (\d+) drops", ex.status.value)
    assert m, ex.status.value
    d, smallest = float(m.group(1)), int(m.group(2))
    assert d + 0.1 <= ex.radius.max
    ex.radius.value = round(d + 0.1, 2)  # past the stated distance: two atoms become one
    assert int(ex.clusters.is_atom.sum()) < n0
    ex.radius.value = 0.5
    assert int(ex.clusters.is_atom.sum()) == n0
    ex.min_particles.value = smallest + 1  # past the smallest atom's particles: it is dropped
    assert int(ex.clusters.is_atom.sum()) < n0


def test_decode_explorer_title_counts_right_keeps_nms_spheres_in_the_scene_and_explains_the_threshold(recorded):
    rec, res, crystals, _, _ = recorded
    ex = widgets.DecodeExplorer(rec, crystals, res)
    title = ex.figure.layout.title.text
    assert re.search(r"· \d+ atoms? ", title) and "<sup>" not in title
    assert "score threshold" in ex.status.value  # what the threshold slider would change, or that nothing would
    span = np.diff(np.asarray(ex._ranges), axis=1).ravel()
    ex.radius.value = 3.0
    grown = np.diff(np.asarray(ex._ranges), axis=1).ravel()
    assert (grown >= span + 2 * (3.0 + 0.2 - 0.8) - 1e-6).all()  # room for a 3 Å sphere on every side
    assert tuple(ex.figure.layout.scene.xaxis.range) == tuple(ex._ranges[0])
