"""The shipped checkpoints load, are slim, and reach their stated metrics on held-out crystals."""

import pytest
import torch

from nesf_viz.assets import CHECKPOINTS, checkpoint_path, default_checkpoint_path
from nesf_viz.checkpoints import load_checkpoint
from nesf_viz.datasets import DatasetUnavailable
from nesf_viz.decode import DecodeConfig, decode_crystals
from nesf_viz.errors import CheckpointError
from nesf_viz.evaluate import held_out_crystals
from nesf_viz.metrics import metrics_of
from nesf_viz.model import SHAPE_FIELDS, NeSF, NeSFConfig


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_shipped_checkpoint_is_small_and_complete(name):
    path = checkpoint_path(name)
    assert path.stat().st_size < 5_000_000
    raw = torch.load(path, weights_only=True)
    assert "optimizer_state" not in raw and raw["epoch"] >= 1 and raw["history"]["val_loss"]
    ck = load_checkpoint(path)
    assert isinstance(ck.model, NeSF)
    paper = NeSFConfig(num_species=ck.model.config.num_species)  # the paper's network for its vocabulary
    for shape in SHAPE_FIELDS:
        assert getattr(ck.model.config, shape) == getattr(paper, shape), shape
    assert ck.model.num_parameters() > 740_000
    rec = CHECKPOINTS[name].record
    assert rec["name"] == name and rec["dataset"] == CHECKPOINTS[name].dataset
    # a shipped model says how right it is (species and cell too, not only atom counts) and how it was made
    for key in ("atom_count_error_pct", "position_error_actual_A", "species_error_actual_pct", "length_mae_A",
                "angle_mae_deg", "match_rate_pct"):
        assert isinstance(rec["metrics"][key], float), key
    assert "nesf-viz " in rec["training"]["command"]
    assert rec["training"]["best_epoch"] == raw["epoch"] <= rec["training"]["epochs"]
    assert rec["training"]["precision"] == ("bf16" if raw["train_config"]["mixed_precision"] is True else "float32")


def _held_out(name: str, n: int):
    try:  # the LCS6Å test split ships with the package: only other datasets can be absent
        return held_out_crystals(name, limit=n)
    except DatasetUnavailable as exc:
        pytest.skip(f"the held-out split of {name!r} is not on this machine: {exc}")


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_shipped_checkpoint_reaches_its_stated_metrics_on_held_out_crystals(name):
    """A slice of the split the metrics were measured on; the bounds are the stated full-split
    numbers with the margin a 48-crystal slice needs (see ShippedCheckpoint.bounds)."""
    info = CHECKPOINTS[name]
    ck = load_checkpoint(info.path)
    test = _held_out(name, 48)
    result = decode_crystals(ck.model, test, box=ck.box, vocab=ck.vocab, config=DecodeConfig.fast(),
                             progress=False)
    m = metrics_of(test, result, match=True).to_dict()
    assert m["n_no_atoms"] == 0
    for key, bound in info.bounds.items():
        if key == "match_rate_pct":
            assert m[key] >= bound, (key, m[key], bound)
        else:
            assert m[key] <= bound, (key, m[key], bound)


def test_default_is_the_embedded_data_checkpoint_and_unknown_names_are_named_errors():
    assert default_checkpoint_path() == CHECKPOINTS["synthetic"].path
    with pytest.raises(CheckpointError, match="no shipped checkpoint named 'nope'"):
        checkpoint_path("nope")
