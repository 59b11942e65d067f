"""nesf_viz: Neural Structure Fields for crystals — train, decode, and watch it work."""

from .data import (
    BoundingBox,
    Crystal,
    CrystalBatch,
    SpeciesVocab,
    crystal_from_structure,
    load_crystals,
    read_cif_folder,
    read_csv,
    read_structures,
)
from .errors import NeSFError
from .fields import ExactFields, StructureFields, ground_truth_targets, nearest_atoms
from .model import NeSF, NeSFConfig
from .sampling import QuerySampler, SamplingConfig
from .train import Checkpoint, EpochReport, TrainConfig, load_checkpoint, train

__version__ = "0.1.0"

__all__ = [
    "BoundingBox",
    "Checkpoint",
    "Crystal",
    "CrystalBatch",
    "EpochReport",
    "ExactFields",
    "NeSF",
    "NeSFConfig",
    "NeSFError",
    "QuerySampler",
    "SamplingConfig",
    "SpeciesVocab",
    "StructureFields",
    "TrainConfig",
    "crystal_from_structure",
    "ground_truth_targets",
    "load_checkpoint",
    "load_crystals",
    "nearest_atoms",
    "read_cif_folder",
    "read_csv",
    "read_structures",
    "train",
]
