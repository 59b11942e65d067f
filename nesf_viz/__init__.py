"""nesf_viz: Neural Structure Fields for crystals — train, decode, and watch it work."""

from . import reference  # the module (METRICS, the paper's Table 1: nv.reference.reference(...)), not shadowed
from .assets import CHECKPOINTS, checkpoint_path, default_checkpoint_path
from .checkpoints import Checkpoint, load_checkpoint
from .data import (
    BoundingBox,
    Crystal,
    CrystalBatch,
    DataSource,
    SpeciesVocab,
    crystal_from_structure,
    load_crystals,
    read_cif_folder,
    read_csv,
    read_structures,
)
from .datasets import dataset_path
from .decode import DecodeConfig, DecodeResult, decode, decode_crystals
from .device import resolve_device
from .errors import NeSFError
from .evaluate import Evaluation, held_out_crystals, run_evaluate, success_and_failure_of
from .fields import ExactFields, StructureFields, ground_truth_targets, nearest_atoms
from .hooks import DecodeHook, TrajectoryRecorder
from .metrics import (
    CrystalVerdict,
    ReconstructionMetrics,
    crystal_verdicts,
    format_site_errors,
    format_verdicts,
    match_metrics,
    metrics_of,
    paper_metrics,
    site_errors,
    success_and_failure,
)
from .model import NeSF, NeSFConfig
from .reconstruction import Reconstruction, reconstruct
from .reference import glossary, results_table
from .sampling import QuerySampler, SamplingConfig
from .survey import Survey, survey
from .train import EpochReport, train
from .train_config import TrainConfig

__version__ = "0.1.0"

__all__ = [
    "BoundingBox",
    "CHECKPOINTS",
    "Checkpoint",
    "Crystal",
    "CrystalVerdict",
    "DecodeConfig",
    "DecodeHook",
    "DecodeResult",
    "CrystalBatch",
    "DataSource",
    "Evaluation",
    "EpochReport",
    "ExactFields",
    "NeSF",
    "NeSFConfig",
    "NeSFError",
    "QuerySampler",
    "Reconstruction",
    "ReconstructionMetrics",
    "SamplingConfig",
    "SpeciesVocab",
    "StructureFields",
    "Survey",
    "TrainConfig",
    "TrajectoryRecorder",
    "checkpoint_path",
    "crystal_from_structure",
    "crystal_verdicts",
    "dataset_path",
    "decode",
    "decode_crystals",
    "default_checkpoint_path",
    "explore",
    "format_site_errors",
    "format_verdicts",
    "glossary",
    "ground_truth_targets",
    "held_out_crystals",
    "load_checkpoint",
    "load_crystals",
    "match_metrics",
    "metrics_of",
    "nearest_atoms",
    "paper_metrics",
    "read_cif_folder",
    "read_csv",
    "read_structures",
    "reconstruct",
    "reference",
    "resolve_device",
    "results_table",
    "run_evaluate",
    "site_errors",
    "success_and_failure",
    "success_and_failure_of",
    "survey",
    "train",
    "viz",
]


def __getattr__(name: str):
    """`nesf_viz.explore` (the dataset explorer) and `nesf_viz.viz` (figures, views, widgets) are
    imported on first use: they need plotly and ipywidgets, which `import nesf_viz` does not load.
    So a notebook needs one import, `import nesf_viz as nv`, and reaches everything as `nv.*`."""
    if name == "explore":
        from .viz.explorer import explore

        return explore
    if name == "viz":
        import importlib

        return importlib.import_module(".viz", __name__)
    raise AttributeError(f"module 'nesf_viz' has no attribute {name!r}")
