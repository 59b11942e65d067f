import pytest
import torch

from nesf_viz.checkpoints import export_checkpoint, load_checkpoint
from nesf_viz.errors import CheckpointError
from nesf_viz.train import train
from nesf_viz.train_config import TrainConfig


def test_export_drops_optimizer_and_cannot_resume(synthetic_small, tmp_path):
    tr, va = synthetic_small["train"][:16], synthetic_small["val"][:6]
    train(tr, va, tmp_path / "run", TrainConfig(epochs=1, batch_size=8, device="cpu"), progress=False)
    slim = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "slim" / "last.pt")
    assert slim.stat().st_size < 0.5 * (tmp_path / "run" / "last.pt").stat().st_size
    a, b = load_checkpoint(tmp_path / "run" / "last.pt"), load_checkpoint(slim)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(tr, va, tmp_path / "slim", TrainConfig(epochs=2), resume=True, progress=False)
