"""The shipped checkpoint (trained by `make checkpoint`) loads and decodes the embedded test split."""

import torch

from nesf_viz.assets import default_checkpoint_path
from nesf_viz.data import load_crystals
from nesf_viz.decode import DecodeConfig
from nesf_viz.evaluate import decode_crystals
from nesf_viz.metrics import paper_metrics
from nesf_viz.model import NeSF
from nesf_viz.train import load_checkpoint


def test_shipped_checkpoint_is_small_and_complete():
    path = default_checkpoint_path()
    assert path.stat().st_size < 5_000_000
    raw = torch.load(path, weights_only=True)
    assert "optimizer_state" not in raw and raw["epoch"] >= 1 and raw["history"]["val_loss"]
    ck = load_checkpoint(path)
    assert isinstance(ck.model, NeSF) and ck.model.num_parameters() > 750_000  # the paper's network


def test_shipped_checkpoint_decodes_embedded_test_split():
    ck = load_checkpoint(default_checkpoint_path())
    test = load_crystals("synthetic", "test")[:12]
    result = decode_crystals(test, fields=ck.model, box=ck.box, vocab=ck.vocab, config=DecodeConfig(),
                             progress=False)
    m = paper_metrics(test, result)
    # measured on 48 test crystals: 0 % atom-count error, 0.088 A, lengths 0.135 A, angles 3.6 deg
    assert m.n_no_atoms == 0
    assert m.atom_count_error_pct <= 25
    assert m.position_error_actual_A < 0.25
    assert m.length_mae_A < 0.4 and m.angle_mae_deg < 8
