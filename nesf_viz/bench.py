"""The benchmark harness: what every script in ``benchmarks/`` measures with, in one place.

- timing: `timed` (one call, result first, then seconds; CUDA synchronised), `alternate`
  (several candidates interleaved, because these machines drift by minutes), `medians`;
- the machine: `machine` (its CPU and the cores this process may use), `matmul_gflops` (float32
  matmul rate, the yardstick of achieved GFLOP/s);
- evaluation: `decode_with` (a checkpoint's model, or any fields, on a list of crystals) and
  `evaluate_on` (its metrics dict with the decode speed), `held_out` (an experiment dataset's
  held-out split);
- output: `table` (markdown, metric keys named by `nesf_viz.reference.METRICS`), `write_json`.

Scripts import this module from the installed package (no path edits) and keep only what is
their own: the question they answer and its command line.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .checkpoints import Checkpoint
from .data import Crystal
from .decode import DecodeConfig, DecodeResult, decode_crystals
from .device import cpu_model
from .metrics import metrics_of
from .reference import METRICS

__all__ = ["timed", "alternate", "medians", "machine", "matmul_rate", "matmul_gflops", "MATMUL_SHAPES", "decode_with",
           "evaluate_on", "held_out", "column", "table", "cell", "write_json"]


# ----------------------------------------------------------------------------- timing


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str | None = None) -> tuple[Any, float]:
    """(fn(), seconds) of one call; on a CUDA `device` the kernels are waited for on both ends."""
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def alternate(fns: Mapping[str, Callable[[], Any]], repeats: int,
              device: torch.device | str | None = None) -> dict[str, list[float]]:
    """Each candidate `repeats` times, interleaved (a b c a b c ...); name -> wall times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn, device)[1])
    return times


def medians(times: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """name -> median of its times."""
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------- the machine


MATMUL_SHAPES: dict[str, tuple[int, int, int]] = {"65536x131x128": (65536, 131, 128), "2048^3": (2048, 2048, 2048)}
"""The field MLP's first-layer shape (65,536 points of a chunk) and a large square product."""


def machine() -> str:
    """The CPU model (Linux /proc/cpuinfo, else `platform.machine()`) and the cores this process may
    use, e.g. 'AMD EPYC 7B13, 2 cores': what a results file records beside its timings."""
    name = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name.replace(' Processor', '')}, {cores} core{'s' if cores != 1 else ''}"


def matmul_rate(m: int, k: int, n: int, repeats: int = 7) -> float:
    """float32 GFLOP/s of an (m, k) x (k, n) matmul on the CPU, median of `repeats` after a warm-up."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    ts = [timed(lambda: a @ b)[1] for _ in range(repeats)]
    return 2 * m * k * n / statistics.median(ts) / 1e9


def matmul_gflops(repeats: int = 7) -> dict[str, float]:
    """`matmul_rate` of every `MATMUL_SHAPES` entry."""
    return {name: matmul_rate(*shape, repeats=repeats) for name, shape in MATMUL_SHAPES.items()}


# ----------------------------------------------------------------------------- evaluation


def decode_with(checkpoint: Checkpoint, crystals: Sequence[Crystal], config: DecodeConfig | str = "fast", *,
                fields=None, device: torch.device | str = "cpu") -> DecodeResult:
    """Decode `crystals` with a checkpoint's model (or other `fields`, e.g. a wrapper of it) in its
    box and vocabulary; `config` a DecodeConfig or a decoder name ('paper', 'fast', 'coarse')."""
    cfg = DecodeConfig.preset(config) if isinstance(config, str) else config
    return decode_crystals(checkpoint.model if fields is None else fields, crystals, box=checkpoint.box,
                           vocab=checkpoint.vocab, config=cfg, device=device, progress=False)


def evaluate_on(checkpoint: Checkpoint, crystals: Sequence[Crystal], config: DecodeConfig | str = "fast", *,
                match: bool = False, periodic: bool = False, fields=None) -> tuple[dict, DecodeResult]:
    """(`ReconstructionMetrics` dict, the decode) of `decode_with`; `decode_structures_per_s` holds
    the speed. periodic: minimum-image paper metrics."""
    res = decode_with(checkpoint, crystals, config, fields=fields)
    return metrics_of(crystals, res, match=match, periodic=periodic).to_dict(), res


def held_out(dataset: str) -> list[Crystal]:
    """The held-out split of an experiment dataset (its first task: the paper's split, or fold 0)."""
    from .experiment import make_tasks

    return list(make_tasks(dataset)[0].test)


# ----------------------------------------------------------------------------- output


def column(key: str) -> str:
    """A metric key's table column ('pos act Å'), the key itself for anything else."""
    return METRICS[key].column if key in METRICS else key


def cell(value: Any, spec: str = "{:.3g}") -> str:
    """One table cell: floats through `spec`, None as '–', anything else (counts, text) as text."""
    if value is None:
        return "–"
    return spec.format(value) if isinstance(value, float) else str(value)


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], spec: str = "{:.3g}") -> str:
    """A markdown table; metric keys in `head` become their columns, cells go through `cell`."""
    lines = ["| " + " | ".join(column(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v, spec) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | Path, obj: Any, indent: int = 1) -> Path:
    """Write `obj` as JSON (numpy and torch scalars as floats), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent, default=float) + "\n")
    return path
