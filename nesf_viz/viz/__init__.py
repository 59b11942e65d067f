"""Plotly figures for NeSF (pure: arrays or pymatgen Structures in, ``go.Figure`` out).

Importing this package imports plotly only and changes none of its settings; crystal-toolkit
(which patches pymatgen's notebook display) is imported lazily, the first time a Structure is
drawn. `notebook_mode()`, called at the top of a notebook, makes its figures show in exported
HTML too (`nesf_viz.viz.notebook`).
"""

from .figures import (
    architecture_figure,
    cluster_figure,
    compare_figure,
    crystal_figure,
    field_slice_figure,
    interpolation_figure,
    interpolation_path_figure,
    latent_pca_figure,
    metrics_bars_figure,
    particle_animation,
    query_points_figure,
    save_html,
    save_png,
    site_error_figure,
    species_slice_figure,
    species_vote_figure,
    training_curves_figure,
    update_training_curves,
)
from .notebook import notebook_mode
from .scene import element_color, scene_to_traces, structure_traces

_LAZY = {
    # views: computed once from fields or a recorded decode, drawn with .figure() (nesf_viz.viz.compute)
    **{name: "compute" for name in ("field_slice", "species_slice", "trajectory_view", "cluster_view",
                                    "species_votes", "training_queries", "latent_table", "decode_interpolation",
                                    "site_error_view", "periodic_face")},
    # widgets (ipywidgets, imported on first use: nesf_viz.viz.widgets)
    **{name: "widgets" for name in ("DecodeExplorer", "FieldExplorer", "LatentInterpolator", "TrainingPanel")},
    "save_particle_gif": "export",
}


def __getattr__(name: str):
    """The views, widgets and GIF export under `nesf_viz.viz` (`nv.viz.cluster_view`,
    `nv.viz.TrainingPanel`), imported on first use: widgets need ipywidgets, which figures do not."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nesf_viz.viz' has no attribute {name!r}")

__all__ = [
    "architecture_figure",
    "cluster_figure",
    "compare_figure",
    "crystal_figure",
    "element_color",
    "field_slice_figure",
    "interpolation_figure",
    "interpolation_path_figure",
    "latent_pca_figure",
    "metrics_bars_figure",
    "notebook_mode",
    "particle_animation",
    "query_points_figure",
    "save_html",
    "save_png",
    "scene_to_traces",
    "site_error_figure",
    "species_slice_figure",
    "species_vote_figure",
    "structure_traces",
    "training_curves_figure",
    "update_training_curves",
]
