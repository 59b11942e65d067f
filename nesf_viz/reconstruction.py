"""One's own crystal through a trained NeSF: `reconstruct` encodes and decodes it and says how
right the decode is (`Reconstruction`: the input as the model sees it, its decode, a verdict,
a figure and a CIF).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .checkpoints import Checkpoint, load_checkpoint
from .data import Crystal, crystal_from_structure, load_crystals
from .decode import DecodeConfig, decode_crystals
from .device import resolve_device
from .metrics import CrystalVerdict, crystal_verdicts

__all__ = ["Reconstruction", "reconstruct"]


@dataclass(frozen=True)
class Reconstruction:
    """One crystal through a trained NeSF: the input as the model sees it (conventional cell,
    project frame), its decode, and how right the decode is."""

    original: Crystal
    decoded: Crystal
    verdict: CrystalVerdict
    checkpoint: str

    @property
    def decoded_structure(self):
        """The decoded crystal as a pymatgen Structure (None when no atom was decoded)."""
        return self.decoded.to_structure() if self.decoded.num_atoms else None

    def figure(self):
        """Original (left) vs decoded (right), decoded atoms linked to their match (Plotly)."""
        from .viz.figures import compare_figure

        return compare_figure(self.original.to_structure(), self.decoded_structure,
                              title=f"{self.verdict.true_formula} -> {self.verdict.decoded_formula} · "
                                    f"{'decoded right' if self.verdict.right else 'decoded WRONG'} · "
                                    f"position error {self.verdict.position_error_A:.3f} Å")

    def to_cif(self, path: str | Path) -> Path:
        """Write the decoded crystal as a CIF file."""
        if not self.decoded.num_atoms:
            from .errors import EmptyStructureError

            raise EmptyStructureError("nothing to write: no atom was decoded")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.decoded_structure.to(filename=str(path))
        return path

    def __str__(self) -> str:
        from .metrics import format_verdicts

        return f"{self.checkpoint}:\n{format_verdicts([self.verdict])}"


def _as_crystal(item, conventional: bool) -> Crystal:
    if isinstance(item, Crystal):
        return item
    if isinstance(item, (str, Path)):
        path = Path(item)
        if path.suffix.lower() != ".cif" or not path.is_file():
            from .errors import DatasetError

            raise DatasetError(f"no CIF file at {path} (reconstruct takes one .cif file, a Structure or a Crystal)")
        return load_crystals(path, conventional=conventional)[0]
    if hasattr(item, "lattice") and hasattr(item, "frac_coords"):
        return crystal_from_structure(item, item.composition.reduced_formula, conventional)
    raise TypeError(f"reconstruct takes a pymatgen Structure, a CIF path or a Crystal, got {type(item).__name__}")


def reconstruct(item, checkpoint="synthetic", *, decoder: Literal["fast", "coarse", "paper"] = "fast",
                device: str = "auto", conventional: bool = True, match: bool = True) -> Reconstruction:
    """Encode and decode one crystal with a trained NeSF and say how right the result is.

    item: a pymatgen Structure, a CIF file path or a `Crystal`. checkpoint: a shipped model's
    name (`nesf_viz.assets.CHECKPOINTS`), a checkpoint path or a loaded `Checkpoint`.
    Elements outside the model's vocabulary raise `UnknownSpeciesError` naming them.
    """

    dev = resolve_device(device)
    if isinstance(checkpoint, Checkpoint):
        ckpt, label = checkpoint, "checkpoint"
    else:
        from .assets import resolve_checkpoint

        ckpt, label = load_checkpoint(resolve_checkpoint(checkpoint), dev), str(checkpoint)
    crystal = _as_crystal(item, conventional)
    ckpt.vocab.encode(crystal.atomic_numbers, crystal.id)  # unknown elements: a named error, before any work
    ckpt.box.check(crystal)
    config = DecodeConfig.preset(decoder)
    result = decode_crystals(ckpt.model.to(dev), [crystal], box=ckpt.box, vocab=ckpt.vocab, config=config,
                             device=dev, progress=False)
    decoded = result.to_crystals()[0]
    return Reconstruction(crystal, decoded, crystal_verdicts([crystal], [decoded], match=match)[0], label)
