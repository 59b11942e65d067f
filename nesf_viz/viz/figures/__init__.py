"""Plotly figures for NeSF: crystals, decoding, fields, clusters, latents and training.

One module per subject; every figure function is exported here (``from nesf_viz.viz.figures
import X``):

    structure   crystal_figure, compare_figure, site_error_figure
    particles   particle_animation, cluster_figure, species_vote_figure
    fields      field_slice_figure, field_slice_pair_figure, species_slice_figure, query_points_figure
    latent      latent_pca_figure, interpolation_figure, interpolation_path_figure
    survey      survey_map_figure, survey_map_png (a dataset's map; the explorer's)
    training    training_curves_figure, update_training_curves
    benchmark   metrics_bars_figure, time_to_accuracy_figure
    network     architecture_figure
    output      save_html, save_png

Every function here is pure: numpy arrays (or pymatgen Structures) in, a
``plotly.graph_objects.Figure`` out. Nothing runs a model or imports torch; crystal-toolkit is
imported lazily (through :mod:`nesf_viz.viz.scene`) only when a structure is drawn.

Shape glossary: B crystals, N atoms, P particles, T recorded steps, S species, C clusters,
D latent size, U x V pixels of a 2-D slice. Lengths in Å, angles in degrees.
"""

from ._common import CAMERA, FONT, PALETTE, REJECTED_COLOR, TEMPLATE
from .benchmark import metrics_bars_figure, time_to_accuracy_figure
from .fields import field_slice_figure, field_slice_pair_figure, query_points_figure, species_slice_figure
from .latent import interpolation_figure, interpolation_path_figure, latent_pca_figure
from .network import architecture_figure
from .output import save_html, save_png
from .particles import cluster_figure, particle_animation, species_vote_figure
from .structure import compare_figure, crystal_figure, error_magnification, site_error_figure
from .survey import survey_map_figure, survey_map_png
from .training import training_curves_figure, update_training_curves

__all__ = [
    "CAMERA",
    "FONT",
    "PALETTE",
    "REJECTED_COLOR",
    "TEMPLATE",
    "architecture_figure",
    "cluster_figure",
    "compare_figure",
    "crystal_figure",
    "error_magnification",
    "field_slice_figure",
    "field_slice_pair_figure",
    "interpolation_figure",
    "interpolation_path_figure",
    "latent_pca_figure",
    "metrics_bars_figure",
    "particle_animation",
    "query_points_figure",
    "save_html",
    "save_png",
    "site_error_figure",
    "species_slice_figure",
    "species_vote_figure",
    "survey_map_figure",
    "survey_map_png",
    "time_to_accuracy_figure",
    "training_curves_figure",
    "update_training_curves",
]
