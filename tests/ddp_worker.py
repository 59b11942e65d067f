"""Run under torchrun (2 CPU processes, gloo) by tests/test_train.py::test_ddp_two_cpu_ranks."""

import json
import sys

import torch

from nesf_viz.data import load_crystals
from nesf_viz.train import train
from nesf_viz.train_config import TrainConfig

torch.set_num_threads(1)
out = sys.argv[1]
tr = load_crystals("synthetic:80", "train")[:32]
va = load_crystals("synthetic:80", "val")
res = train(tr, va, out, TrainConfig(epochs=4, batch_size=8, device="cpu"), progress=False,
            check_replicas=True)
rank = torch.distributed.get_rank()
flat = torch.cat([p.detach().reshape(-1) for p in res.model.parameters()])
with open(f"{out}/rank{rank}.json", "w") as fh:
    json.dump({"loss": res.history["loss"], "checksum": float(flat.double().sum())}, fh)
torch.distributed.destroy_process_group()
