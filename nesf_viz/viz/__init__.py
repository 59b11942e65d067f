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
    species_slice_figure,
    species_vote_figure,
    training_curves_figure,
    update_training_curves,
)
from .notebook import notebook_mode
from .scene import element_color, scene_to_traces, structure_traces

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
    "species_slice_figure",
    "species_vote_figure",
    "structure_traces",
    "training_curves_figure",
    "update_training_curves",
]
