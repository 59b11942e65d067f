"""Tests for nesf_viz.viz (figures.py, scene.py): real assertions on the produced figures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest
from pymatgen.core import Lattice, Structure

from nesf_viz.errors import ShapeError
from nesf_viz.viz import (
    cluster_figure,
    compare_figure,
    crystal_figure,
    element_color,
    field_slice_figure,
    interpolation_figure,
    interpolation_path_figure,
    latent_pca_figure,
    particle_animation,
    save_html,
    save_png,
    scene_to_traces,
    species_slice_figure,
    structure_traces,
    training_curves_figure,
    update_training_curves,
)
from nesf_viz.viz import figures as figures_mod
from nesf_viz.viz import scene as scene_mod
from nesf_viz.viz.figures import time_to_accuracy_figure


@pytest.fixture(scope="module")
def nacl() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def _atom_traces(traces):
    return {t.name.split(" ")[-1]: t for t in traces if (t.meta or {}).get("kind") == "atoms"}


# ------------------------------------------------------------------------------------------
# import hygiene
# ------------------------------------------------------------------------------------------


def test_import_has_no_side_effects():
    """Importing the figures does not import crystal_toolkit (it patches pymatgen's display)."""
    code = "import sys, nesf_viz.viz; print('crystal_toolkit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_viz_modules_never_import_torch():
    import ast

    for mod in (figures_mod, scene_mod):
        tree = ast.parse(open(mod.__file__, encoding="utf-8").read())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert "torch" not in names, mod.__name__


# ------------------------------------------------------------------------------------------
# scene.py
# ------------------------------------------------------------------------------------------


def test_scene_converter_nested_origins_and_primitives():
    from crystal_toolkit.core.scene import Convex, Cylinders, Lines, Scene, Spheres

    cube = [[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    inner = Scene(
        "inner", origin=(0, 2, 0),
        contents=[
            Cylinders(positionPairs=[[[0, 0, 0], [1, 0, 0]], [[0, 0, 0], [0, 0, 1]]],
                      color="#00ff00", radius=0.1),
            Lines(positions=[[0, 0, 0], [0, 1, 0]], color="#0000ff"),
        ],
    )
    outer = Scene(
        "outer", origin=(1, 0, 0),
        contents=[
            Spheres(positions=[[0, 0, 0], [0, 0, 3]], color="#ff0000", radius=0.5,
                    tooltip="Xx here"),
            Spheres(positions=[[5, 5, 5]], color="#ff0000", radius=1.0),
            inner,
        ],
    )
    root = Scene("root", origin=(100, 100, 100),
                 contents=[outer, Scene("poly", contents=[Convex(positions=cube,
                                                                 color="#888888")])])
    traces = scene_to_traces(root, sphere_scale=10.0)
    by_kind = {}
    for t in traces:
        by_kind.setdefault(t.meta["kind"], []).append(t)

    # spheres: one trace per (colour, radius); nested origin applied, root origin ignored
    spheres = sorted(by_kind["spheres"], key=lambda t: t.marker.size)
    assert [len(t.x) for t in spheres] == [2, 1]
    assert np.allclose(np.column_stack([spheres[0].x, spheres[0].y, spheres[0].z]),
                       [[1, 0, 0], [1, 0, 3]])
    assert np.allclose([spheres[1].x[0], spheres[1].y[0], spheres[1].z[0]], [6, 5, 5])
    assert spheres[0].marker.color == "#ff0000"
    assert spheres[0].marker.size == pytest.approx(10.0)   # 2 * 0.5 * 10
    assert spheres[1].marker.size == pytest.approx(20.0)   # radius scales marker size
    assert spheres[0].name == "Xx"                          # named from the tooltip

    # cylinders: both segments merged into one trace with None separators; origins compound
    (cyl,) = by_kind["cylinders"]
    assert list(cyl.x) == [1.0, 2.0, None, 1.0, 1.0, None]
    assert list(cyl.y) == [2.0, 2.0, None, 2.0, 2.0, None]
    assert list(cyl.z) == [0.0, 0.0, None, 0.0, 1.0, None]
    assert cyl.line.color == "#00ff00"
    (lines,) = by_kind["lines"]
    assert list(lines.y) == [2.0, 3.0, None]

    # convex hull of a cube: explicit triangulation (12 triangles), translucent
    (mesh,) = by_kind["convex"]
    assert isinstance(mesh, go.Mesh3d)
    assert len(mesh.i) == 12
    assert 0 < mesh.opacity < 1

    shifted = scene_to_traces(root, include_root_origin=True)
    s = [t for t in shifted if t.meta["kind"] == "spheres" and len(t.x) == 1][0]
    assert np.allclose([s.x[0], s.y[0], s.z[0]], [106, 105, 105])


def test_scene_converter_accepts_json_form_and_hidden_scenes():
    from crystal_toolkit.core.scene import Scene, Spheres

    root = Scene("root", contents=[Scene("h", visible=False, origin=(0, 0, 1),
                                         contents=[Spheres(positions=[[0, 0, 0]], radius=1)])])
    (t,) = scene_to_traces(root.to_json())
    assert t.visible == "legendonly"
    assert t.z[0] == pytest.approx(1.0)


def test_structure_traces_atoms_images_hover(nacl):
    traces = structure_traces(nacl)
    atoms = _atom_traces(traces)
    assert set(atoms) == {"Na", "Cl"}
    # conventional rock salt with images on faces: 14 Na (corners + faces), 13 Cl
    assert len(atoms["Na"].x) == 14
    assert len(atoms["Cl"].x) == 13
    assert atoms["Na"].marker.color == element_color("Na") == "#ab5cf2"
    hover = list(atoms["Na"].text)
    assert all("Na" in h and "frac (" in h for h in hover)
    assert any("frac (0.000, 0.000, 0.000)" in h for h in hover)
    assert any("frac (1.000, 1.000, 1.000)" in h for h in hover)   # image atom on a corner
    names = {t.name for t in traces}
    assert {"cell", "bonds"} <= names
    cell = [t for t in traces if t.name == "cell"][0]
    assert sum(v is None for v in cell.x) == 12                      # 12 cell edges


def test_structure_traces_falls_back_without_crystal_toolkit(nacl, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no scene today")

    monkeypatch.setattr(scene_mod, "_ctk_scene", broken)
    traces = structure_traces(nacl, site_info=[f"note {i}" for i in range(len(nacl))])
    atoms = _atom_traces(traces)
    assert len(atoms["Na"].x) == 14 and len(atoms["Cl"].x) == 13
    assert atoms["Cl"].marker.color == element_color("Cl")
    assert all("note" in h for h in atoms["Cl"].text)
    assert any(t.name == "cell" for t in traces)


def test_crystal_figure_layout(nacl):
    fig = crystal_figure(nacl)
    assert "NaCl" in fig.layout.title.text
    assert fig.layout.template.layout.paper_bgcolor in ("white", "#ffffff", "rgb(255,255,255)")
    assert fig.layout.scene.xaxis.title.text == "x (Å)"
    # equal scales: the aspect ratio follows the axis ranges
    rng = np.array([fig.layout.scene[f"{c}axis"].range for c in "xyz"])
    span = rng[:, 1] - rng[:, 0]
    ratio = np.array([fig.layout.scene.aspectratio[c] for c in "xyz"])
    assert np.allclose(ratio, span / span.max())


# ------------------------------------------------------------------------------------------
# compare
# ------------------------------------------------------------------------------------------


def test_compare_figure_errors(nacl):
    decoded = nacl.copy()
    decoded.translate_sites([0], [0.1 / 5.64, 0, 0], frac_coords=True)  # 0.1 Å shift
    fig = compare_figure(nacl, decoded)
    expected = 0.1 / len(nacl)
    assert fig.layout.meta["mean_error"] == pytest.approx(expected, abs=1e-6)
    assert f"{expected:.3f} Å" in fig.layout.title.text
    scenes = {t.scene for t in fig.data}
    assert scenes == {"scene", "scene2"}
    dec_atoms = [t for t in fig.data if t.scene == "scene2" and (t.meta or {}).get("kind")
                 == "atoms"]
    assert all("error" in h for t in dec_atoms for h in t.text)
    links = [t for t in fig.data if (t.meta or {}).get("kind") == "links"][0]
    assert sum(v is None for v in links.x) == len(decoded)


def test_compare_figure_identical_and_empty(nacl):
    assert compare_figure(nacl, nacl).layout.meta["mean_error"] == pytest.approx(0.0, abs=1e-9)
    empty = Structure(nacl.lattice, [], [])
    fig = compare_figure(nacl, empty)
    assert "no atoms decoded" in fig.layout.title.text



def test_compare_figure_draws_a_degenerate_decoded_cell_without_bonding_it(nacl):
    """A barely trained model decoded 51 atoms into a 0.02 A flat cell; CrystalNN bonding of it
    exhausted 13+ GiB in the test suite. It must be drawn plainly (no bonds), quickly."""
    rng = np.random.default_rng(0)
    flat = Structure(Lattice.from_parameters(0.0229, 0.102, 0.178, 4.39, 0.83, 4.11),
                     ["Mn"] * 16 + ["Cu"] * 35, rng.uniform(0, 1, (51, 3)))
    assert not scene_mod.physical_cell(flat) and scene_mod.physical_cell(nacl)
    fig = compare_figure(nacl, flat)
    decoded_names = [tr.name for tr in fig.data if tr.name and tr.name.startswith("decoded")]
    assert decoded_names and not any("bond" in n for n in decoded_names)
    assert any("bond" in (tr.name or "") for tr in fig.data)  # the real original keeps its bonds

# ------------------------------------------------------------------------------------------
# decoding figures
# ------------------------------------------------------------------------------------------


def _trajectory(T=5, P=40, seed=0):
    rng = np.random.default_rng(seed)
    atoms = np.array([[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]])
    start = rng.uniform(0, 4, (P, 3))
    target = atoms[rng.integers(0, 2, P)]
    w = np.linspace(0, 1, T)[:, None, None]
    pos = (1 - w) * start[None] + w * target[None]
    scores = np.linalg.norm(pos - target[None], axis=-1)
    scores[-1, :5] = 2.0   # five particles end far away: rejected
    kept = scores[-1] < 0.9
    return pos, scores, atoms, kept


def test_particle_animation_frames_slider_and_kept_colours():
    pos, scores, atoms, kept = _trajectory()
    T, P = scores.shape
    fig = particle_animation(pos, scores, atoms=atoms, atom_labels=["Na", "Cl"], kept=kept,
                             step_labels=[f"t{i}" for i in range(T)])
    assert len(fig.frames) == T
    steps = fig.layout.sliders[0].steps
    assert len(steps) == T and steps[-1].label == f"t{T - 1}"
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["▶ Play", "❚❚ Pause"]
    last = fig.frames[-1].data
    assert len(last[0].x) == kept.sum()
    assert len(last[1].x) == (~kept).sum() == 5
    assert last[1].marker.color == figures_mod.REJECTED_COLOR
    # earlier frames: nobody rejected yet, all particles coloured by |f_p|
    assert len(fig.frames[0].data[0].x) == P and len(fig.frames[0].data[1].x) == 0
    # fixed colour range and fixed axes across frames
    cmins = {(f.data[0].marker.cmin, f.data[0].marker.cmax) for f in fig.frames}
    assert cmins == {(0.0, 1.8)}
    assert fig.data[0].marker.colorbar.title.text == "|f_p| (Å)"
    for i, c in enumerate("xyz"):
        ax = fig.layout.scene[f"{c}axis"]
        assert ax.autorange is False
        assert ax.range[0] <= pos[..., i].min() and ax.range[1] >= pos[..., i].max()
    atom_trace = fig.data[2]
    assert list(atom_trace.text) == ["Na", "Cl"]


def test_particle_animation_shape_errors():
    pos, scores, atoms, kept = _trajectory()
    with pytest.raises(ShapeError, match="scores"):
        particle_animation(pos, scores[:, :-1])
    with pytest.raises(ShapeError, match="kept"):
        particle_animation(pos, scores, kept=kept[:-1])


def test_field_slice_figure():
    gu, gv = np.linspace(0, 4, 30), np.linspace(0, 3, 20)
    U, V = np.meshgrid(gu, gv, indexing="ij")
    vec = np.stack([2 - U, 1.5 - V], -1)
    mag = np.linalg.norm(vec, axis=-1)
    fig = field_slice_figure(gu, gv, vec, mag, atoms_uv=np.array([[2.0, 1.5]]),
                             atom_labels=["Na"])
    heat, arrows, atoms = fig.data
    assert isinstance(heat, go.Heatmap)
    assert np.asarray(heat.z).shape == (20, 30)            # rows are v, columns u
    assert heat.colorbar.title.text == "|f_p| (Å)"
    assert arrows.mode == "lines" and sum(v is None for v in arrows.x) > 20
    assert list(atoms.text) == ["Na"]
    assert fig.layout.xaxis.title.text == "x (Å)"
    assert fig.layout.yaxis.scaleanchor == "x"
    with pytest.raises(ShapeError, match="vectors_uv"):
        field_slice_figure(gu, gv, vec[:, :, :1], mag)


def test_species_slice_figure():
    gu, gv = np.linspace(0, 4, 16), np.linspace(0, 4, 12)
    labels = (np.arange(16)[:, None] + np.zeros(12, int)) % 3
    conf = np.full((16, 12), 0.7)
    fig = species_slice_figure(gu, gv, labels, conf, ["Na", "Cl", "K"],
                               atoms_uv=np.array([[1.0, 1.0]]))
    cat, confidence = fig.data[0], fig.data[1]
    assert list(cat.colorbar.ticktext) == ["Na", "Cl", "K"]
    assert cat.colorscale[0][1] == element_color("Na")
    assert (cat.zmin, cat.zmax) == (-0.5, 2.5)
    assert (confidence.zmin, confidence.zmax) == (0.0, 1.0)
    assert confidence.colorbar.title.text == "confidence"
    assert fig.layout.width is None  # as wide as the notebook: a fixed width cut the right-hand colour bar


def test_atom_labels_on_a_slice_edge_point_inwards():
    gu, gv = np.linspace(0, 5.64, 30), np.linspace(0, 5.64, 30)
    labels = np.zeros((30, 30), int)
    fig = species_slice_figure(gu, gv, labels, np.ones((30, 30)), ["Na"],
                               atoms_uv=np.array([[0.0, 0.0], [2.82, 2.82], [5.64, 5.64]]), atom_labels=["Na"] * 3)
    assert list(fig.data[-1].textposition) == ["top right", "top center", "bottom left"]


def test_cluster_figure():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0, 0], [3.0, 0, 0], [0, 3.0, 0]])
    pos = np.concatenate([c + rng.normal(0, 0.1, (10, 3)) for c in centres]
                         + [rng.uniform(-1, 4, (7, 3))])
    cid = np.concatenate([np.full(10, i) for i in range(3)] + [np.full(7, -1)])
    kept = cid >= 0
    kept[0] = False                                          # rejected by the residual test
    counts = np.array([9, 10, 10])
    fig = cluster_figure(pos, cid, centres, counts, kept, nms_radius=0.5, atoms=centres)
    by_name = {t.name: t for t in fig.data}
    assert len(by_name["rejected particles"].x) == 8
    assert by_name["rejected particles"].marker.color == figures_mod.REJECTED_COLOR
    clustered = by_name["clustered particles"]
    assert len(clustered.x) == 29
    assert len(set(clustered.marker.color)) == 3              # one colour per cluster
    cen = by_name["cluster centres"]
    assert cen.marker.symbol == "diamond"
    assert [int(r[1]) for r in cen.customdata] == [9, 10, 10]
    mesh = [t for t in fig.data if isinstance(t, go.Mesh3d)][0]
    verts = np.column_stack([mesh.x, mesh.y, mesh.z])
    d = np.linalg.norm(verts[: len(verts) // 3] - centres[0], axis=1)
    assert np.allclose(d, 0.5)                                 # NMS sphere of the right radius
    assert mesh.opacity < 0.5


# ------------------------------------------------------------------------------------------
# latents, interpolation
# ------------------------------------------------------------------------------------------


def test_latent_pca_recovers_explained_variance():
    rng = np.random.default_rng(0)
    B, D = 50, 8
    q, _ = np.linalg.qr(rng.normal(size=(B, 2)) - 0)
    s = q - q.mean(0)                                        # centred scores
    s, _ = np.linalg.qr(s)
    v, _ = np.linalg.qr(rng.normal(size=(D, 2)))
    latents = 3.0 * np.outer(s[:, 0], v[:, 0]) + 1.0 * np.outer(s[:, 1], v[:, 1]) + 5.0
    labels = ["a"] * 25 + ["b"] * 25
    fig = latent_pca_figure(latents, labels, names=[f"c{i}" for i in range(B)])
    ratio = fig.layout.meta["explained_variance_ratio"]
    assert ratio == pytest.approx([0.9, 0.1], abs=1e-6)
    assert "90.0%" in fig.layout.xaxis.title.text and "10.0%" in fig.layout.yaxis.title.text
    assert [t.name for t in fig.data] == ["a", "b"]
    assert sum(len(t.x) for t in fig.data) == B
    assert "c0" in fig.data[0].text


def test_interpolation_figures(nacl):
    structs = [nacl.copy() for _ in range(3)]
    structs[1].scale_lattice(nacl.volume * 1.1)
    structs[2].remove_sites([0])
    steps = [0.0, 0.5, 1.0]
    counts = [len(s) for s in structs]
    lengths = np.array([s.lattice.abc for s in structs])
    angles = np.array([s.lattice.angles for s in structs])
    fig = interpolation_figure(structs, steps, counts, lengths, angles)
    slider = fig.layout.sliders[0]
    assert len(slider.steps) == 3
    n = len(fig.data)
    for k, st in enumerate(slider.steps):
        vis = st.args[0]["visible"]
        assert len(vis) == n and any(vis)
        shown = [t for t, v in zip(fig.data, vis) if v]
        atoms = sum(len(t.x) for t in shown if (t.meta or {}).get("kind") == "atoms")
        assert atoms >= counts[k]
        assert f"{counts[k]} atoms" in st.args[1]["title.text"]
    path = interpolation_path_figure(steps, counts, lengths, angles)
    assert len(path.data) == 7                                 # count + 3 lengths + 3 angles
    assert path.layout.yaxis2.title.text == "length (Å)"
    assert list(path.data[0].y) == counts
    assert path.data[0].text is None and path.layout.xaxis3.title.text.startswith("t along the path")
    labelled = interpolation_path_figure(steps, counts, lengths, angles, structures=structs)
    formulas = [s.composition.reduced_formula for s in structs]
    assert list(labelled.data[0].customdata) == formulas  # every formula on hover
    shown = list(labelled.data[0].text)  # on the figure at both ends and where it changes
    assert shown[0] == formulas[0] and shown[-1] == formulas[-1]
    assert all(t in ("", f) for t, f in zip(shown, formulas))


# ------------------------------------------------------------------------------------------
# training curves
# ------------------------------------------------------------------------------------------


def test_training_curves_and_update():
    h = {"epoch": [1, 2, 3], "loss": [1.0, 0.5, 0.25], "loss_pos": [0.6, 0.3, 0.1],
         "val_loss": [1.2, 0.6, 0.3], "val_loss_pos": [0.7, 0.4, 0.2], "loss_spec": []}
    fig = training_curves_figure(h)
    assert fig.layout.yaxis.type == "log"
    # 1-2-5 ticks written in full (not a bare '5' beside '10'); the legend above, the plot full width
    assert fig.layout.yaxis.dtick == "D2" and fig.layout.yaxis.tickformat == "~g"
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0 and fig.layout.width is None
    keys = [t.meta["key"] for t in fig.data]
    assert keys == ["loss", "val_loss", "loss_pos", "val_loss_pos", "loss_spec"]
    train, val = fig.data[0], fig.data[1]
    assert train.line.color == val.line.color
    assert train.line.dash == "solid" and val.line.dash == "dash"
    assert list(train.x) == [1, 2, 3]

    h["epoch"].append(4)
    h["loss"].append(0.125)
    h["val_loss_angle"] = [0.0, 0.1, 0.05, 0.02]              # a new curve; 0 is dropped (log)
    out = update_training_curves(fig, h)
    assert out is fig
    assert list(fig.data[0].y) == [1.0, 0.5, 0.25, 0.125]
    new = [t for t in fig.data if t.meta["key"] == "val_loss_angle"][0]
    assert list(new.y) == [None, 0.1, 0.05, 0.02]

    empty = training_curves_figure({})
    assert len(empty.data) == 0 and empty.layout.yaxis.type == "log"


def test_time_to_accuracy_groups_folds_and_seeds_under_one_legend_entry():
    def run(dataset, run_name, recipe, seed, scale):
        return {"dataset": dataset, "run": run_name, "recipe": recipe, "seed": seed,
                "history": {"seconds": [60.0, 60.0], "val_loss": [2.0 * scale, 1.0 * scale]},
                "curve": [{"minutes": 1.0, "atom_count_error_pct": 50.0 * scale, "position_error_actual_A": 0.5,
                           "species_error_actual_pct": None}]}
    runs = [run("ybco13", f"ybco13-fold{i}", "fast", 0, 1 + i) for i in range(20)]
    runs += [run("lcs6", "lcs6", "paper", 0, 1.0), run("lcs6", "lcs6", "fast", 0, 0.5)]
    fig = time_to_accuracy_figure(runs)
    assert len(fig.data) == 4 * len(runs)  # every run in every panel
    legend = [t.name for t in fig.data if t.showlegend]
    assert legend == ["ybco13 · fast (20 runs)", "lcs6 · paper", "lcs6 · fast"]
    colors = {t.legendgroup: set() for t in fig.data}
    for t in fig.data:
        colors[t.legendgroup].add(t.line.color)
    assert all(len(c) == 1 for c in colors.values()) and len(set.union(*colors.values())) == 3
    loss = [t for t in fig.data if t.xaxis == "x" and t.legendgroup == "lcs6 · paper"][0]
    assert list(loss.x) == [1.0, 2.0] and list(loss.y) == [2.0, 1.0]
    species = [t for t in fig.data if t.xaxis == "x4"][0]
    assert np.isnan(species.y[0])  # a missing probe value is a gap, not a zero
    # targets: a dashed line in their panel, labelled at the value (log10 of it on a log axis)
    fig = time_to_accuracy_figure(runs, targets={"position_error_actual_A": 0.08, "species_error_actual_pct": 10})
    lines = {(sh.yref, sh.y0) for sh in fig.layout.shapes}
    assert lines == {("y3", 0.08), ("y4", 10)}
    labels = {(a.yref, a.text): a.y for a in fig.layout.annotations if a.text.startswith("target")}
    assert labels == {("y3", "target 0.08"): pytest.approx(np.log10(0.08)), ("y4", "target 10"): 10}


def test_update_training_curves_on_figure_widget():
    pytest.importorskip("anywidget", reason="go.FigureWidget needs anywidget (plotly >= 6)")
    h = {"epoch": [1], "loss": [1.0]}
    w = go.FigureWidget(training_curves_figure(h))
    update_training_curves(w, {"epoch": [1, 2], "loss": [1.0, 0.5]})
    assert list(w.data[0].y) == [1.0, 0.5]


# ------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------


def test_save_html_round_trip(tmp_path):
    pos, scores, atoms, kept = _trajectory(T=3, P=10)
    path = save_html(particle_animation(pos, scores, kept=kept), tmp_path / "sub" / "a.html")
    text = path.read_text(encoding="utf-8")
    assert "plotly" in text.lower()
    assert '<script src="https://cdn.plot.ly' not in text       # no CDN: works offline
    assert len(text) > 1_000_000                                    # plotly.js is embedded


def test_save_png(tmp_path):
    pytest.importorskip("kaleido", reason="kaleido is not installed")
    fig = latent_pca_figure(np.random.default_rng(0).normal(size=(10, 4)), ["x"] * 10)
    try:
        path = save_png(fig, tmp_path / "pca.png", width=400, height=300, scale=1)
    except RuntimeError as exc:  # no Chromium on this machine
        pytest.skip(f"cannot render PNG here: {exc}")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_png_names_missing_kaleido(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", None)          # import kaleido -> ImportError
    with pytest.raises(RuntimeError, match="kaleido"):
        save_png(go.Figure(), tmp_path / "x.png")


def test_metrics_bars_one_panel_per_metric_error_bars_readable_labels_missing_values_say_so():
    from nesf_viz.viz import metrics_bars_figure

    cols = {"paper": {"atom_count_error_pct": 0.53, "species_error_actual_pct": 4.31},
            "exact fields": {"atom_count_error_pct": 0.0, "species_error_actual_pct": 8.82e-8},
            "model": {"atom_count_error_pct": 10.0, "species_error_actual_pct": float("nan")}}
    fig = metrics_bars_figure(cols, ["atom_count_error_pct", "species_error_actual_pct"],
                              errors={"paper": {"atom_count_error_pct": 0.25}})
    assert [a.text for a in fig.layout.annotations] == ["atom-count error (%)", "species error, actual (%)"]
    bars = [t for t in fig.data if t.type == "bar"]
    labels = [t for t in fig.data if t.type == "scatter"]
    assert [t.xaxis for t in bars] == ["x", "x2"] and list(bars[0].y) == ["paper", "exact fields", "model"]
    # the paper's spread is a drawn error bar, not only text
    assert bars[0].error_x.visible and list(bars[0].error_x.array) == [0.25, 0.0, 0.0]
    assert not bars[1].error_x.visible
    assert list(labels[0].text) == ["0.53 ± 0.25", "0", "10.00"]
    assert list(labels[1].text) == ["4.31", "< 0.01", "–"]  # 8.8e-8 % is not printed as 8.82e-08; NaN says so
    assert labels[0].x[0] > 0.53 + 0.25  # the number sits beyond the error bar
    assert not fig.layout.showlegend  # the axis names the bars: no legend entries of zero-length bars
    assert fig.layout.height <= 300 and fig.layout.width is None  # as wide as the notebook, never wider


def test_particle_gif_has_a_frame_per_step_plus_a_held_last_frame(tmp_path):
    from PIL import Image

    from nesf_viz.viz.export import save_particle_gif

    rng = np.random.default_rng(0)
    atoms = np.array([[0.0, 0, 0], [2.0, 2, 2]])
    start = rng.uniform(-1, 3, (40, 3))
    end = atoms[(np.linalg.norm(start[:, None] - atoms[None], axis=-1)).argmin(1)]
    pos = np.stack([start + (end - start) * f for f in (0.0, 0.5, 0.9, 1.0)])
    scores = np.linalg.norm(end[None] - pos, axis=-1)
    scores[0] = np.nan
    out = save_particle_gif(tmp_path / "flow.gif", pos, scores, atoms=atoms, fps=2)
    with Image.open(out) as im:
        assert im.format == "GIF" and im.n_frames == 4  # Pillow merges the held copies of the last frame
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
        assert durations[-1] == 3 * durations[0]  # ... into one frame shown three times as long
        assert im.size[0] >= 400
    with pytest.raises(ShapeError):
        save_particle_gif(tmp_path / "bad.gif", pos, scores[:, :3])


def test_training_curves_tick_whole_epochs_for_short_and_long_runs():
    from nesf_viz.viz import training_curves_figure, update_training_curves

    short = {"epoch": [1, 2], "loss": [2.0, 1.0], "val_loss": [2.1, 1.2]}
    fig = training_curves_figure(short)
    assert {ax.dtick for ax in [fig.layout.xaxis]} == {1}
    long = {"epoch": list(range(1, 41)), "loss": [1.0 / e for e in range(1, 41)]}
    update_training_curves(fig, long)
    assert fig.layout.xaxis.dtick == 5 and fig.layout.xaxis.tick0 == 0


def test_architecture_figure_draws_the_configured_network():
    import dataclasses

    from nesf_viz.model import NeSFConfig
    from nesf_viz.viz.figures import architecture_figure

    fig = architecture_figure()
    texts = " ".join(a.text for a in fig.layout.annotations if a.text)
    assert len(fig.layout.shapes) == 7  # crystal, encoder, z, query point, three heads
    assert sum(1 for a in fig.layout.annotations if a.showarrow) == 7
    assert "256 → 128 ×7 → 3" in texts and "192 numbers" in texts and "256 → 128 → 80" in texts
    small = dataclasses.replace(NeSFConfig(num_species=31), latent_dim=64, position_field_channels=(128, 64, 64))
    texts = " ".join(a.text for a in architecture_figure(small).layout.annotations if a.text)
    assert "128 → 64 ×2 → 3" in texts and "64 numbers" in texts and "→ 31" in texts


def test_site_error_figure_marks_another_element_and_magnifies_to_about_one_angstrom():
    from nesf_viz.viz.figures import error_magnification, site_error_figure

    assert error_magnification(np.array([0.04, 0.01])) == 20.0
    assert error_magnification(np.array([0.3])) == 5.0 and error_magnification(np.array([2.0])) == 1.0
    assert error_magnification(np.array([np.inf])) == 1.0  # nothing decoded: nothing to magnify
    true = np.array([[0.0, 0, 0], [2.0, 2, 2]])
    fig = site_error_figure(true, ["Na", "Cl"], true + [[0.1, 0, 0], [0, 0.2, 0]], ["Na", "Na"],
                            lattice=np.eye(3) * 4.0)
    kinds = [t.meta["kind"] for t in fig.data if isinstance(t.meta, dict)]
    assert kinds == ["lines", "true", "decoded", "errors", "wrong"]  # the cell first
    assert "mean 0.150 Å" in fig.layout.title.text and "1 of 2 nearest atoms another element" in fig.layout.title.text
    wrong = fig.data[-1]
    assert (wrong.x[0], wrong.y[0]) == (2.0, 2.2)  # the decoded Na sitting on the true Cl
    empty = site_error_figure(true, ["Na", "Cl"], np.zeros((0, 3)), [])
    assert empty.layout.title.text == "No atom decoded"


def test_species_vote_labels_only_contested_or_wrong_atoms_and_says_when_every_vote_is_unanimous():
    from nesf_viz.viz import species_vote_figure

    pts = np.zeros((6, 3))
    atoms = np.array([[0.0, 0, 0], [2.0, 0, 0], [0, 2.0, 0]])
    fig = species_vote_figure(pts, ["Na"] * 6, atoms, ["Na", "Cl", "Na"], np.array([1.0, 0.6, 1.0]),
                              truth=["Na", "Cl", "K"])
    decoded = next(t for t in fig.data if t.name.startswith("decoded atoms"))
    assert list(decoded.text) == ["", "Cl 60%", "Na 100%"]  # contested, and wrong; the unanimous right one unlabelled
    assert "1 contested" in fig.layout.title.text
    calm = species_vote_figure(pts, ["Na"] * 6, atoms, ["Na"] * 3, np.ones(3), truth=["Na"] * 3)
    assert "every vote unanimous" in calm.layout.title.text


def test_particle_animation_draws_true_atoms_grey_beside_the_field_colour_scale():
    from nesf_viz.viz import particle_animation

    pos = np.zeros((2, 4, 3))
    fig = particle_animation(pos, np.ones((2, 4)), atoms=np.array([[0.0, 0, 0]]), atom_labels=["Na"])
    true = next(t for t in fig.data if t.name == "true atoms")
    assert true.marker.color == "#8c8c8c" and list(true.text) == ["Na"]
