"""Drivers the CLI calls: decode a dataset into CIF files, evaluate the paper's metrics.

Both take a `data.DataSource` (what to read and how) and a checkpoint. `run_evaluate` returns an
`Evaluation` (the `metrics.ReconstructionMetrics` of the decodes; its JSON has exactly the keys
of `metrics.METRIC_KEYS`). Without a checkpoint it decodes the data's exact ground-truth fields:
no model is involved, which measures the decoder itself (box and vocabulary from the data).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .checkpoints import load_checkpoint
from .data import BoundingBox, Crystal, DataSource, SpeciesVocab, load_crystals
from .decode import DecodeConfig, DecodeResult, decode_crystals, usable_crystals
from .device import resolve_device
from .metrics import CrystalVerdict, ReconstructionMetrics, crystal_verdicts, metrics_of

log = logging.getLogger(__name__)

__all__ = ["run_decode", "run_evaluate", "Evaluation", "format_table", "write_decoded_folder", "held_out_crystals"]


def _check_output(path: Path, folder: bool) -> None:
    """Fail before decoding when an output cannot be written (read-only, under a file)."""
    from .errors import DatasetError

    if not folder and path.is_dir():
        raise DatasetError(f"output {path} is a folder; give a file path")
    from .checkpoints import probe_writable

    try:
        probe_writable(path if folder else path.parent)
    except OSError as exc:
        raise DatasetError(f"output {path} cannot be written ({exc.strerror or exc}); choose a writable path") from exc


def _inputs(data: DataSource, checkpoint=None, box_from: DataSource | None = None) -> list:
    """What a decode or evaluation reads, for `outputs.check_apart`."""
    from .checkpoints import checkpoint_inputs
    from .outputs import Input

    inputs = [Input(flag, src.path) for flag, src in (("--data", data), ("--box-from", box_from))
              if src is not None and src.path is not None]
    return inputs + checkpoint_inputs(checkpoint)


def run_decode(
    checkpoint: str | Path,
    data: DataSource | str | Path,
    out: str | Path,
    *,
    decode_config: DecodeConfig = DecodeConfig(),
    device: str = "auto",
    batch_size: int = 64,
    overwrite: bool = False,
    append: bool = False,
) -> DecodeResult:
    """Decode `data` (a `DataSource`, or a CSV, a CIF folder, one .cif file, 'synthetic') with a
    trained checkpoint.

    `out` ending in .csv: one CSV of `material_id,cif` (replaced whole). Otherwise a folder
    (`outputs.DecodedFolder`): one CIF per decoded crystal, named from its id (sanitised, unique)
    and `summary.csv`, a row per input crystal saying how right its decode is (atom count,
    composition, StructureMatcher, position and species error against the input itself: NeSF is
    an autoencoder) and which file holds it (`cif_file`). A folder that holds an earlier decode
    is refused unless `overwrite` (its listed files are replaced) or `append`.
    `data.skip_bad`: unreadable structures and elements outside the vocabulary are skipped (named
    in a warning) instead of stopping. Checked before any work: that the output is not and does
    not hold an input, that it can be written, the checkpoint and every crystal.
    """
    from .errors import DatasetError, OutputError
    from .outputs import DecodedFolder, Output, StreamedFile, check_apart

    data, out = DataSource.of(data), Path(out)
    as_csv = out.suffix.lower() == ".csv"
    check_apart([Output("--out", out, folder=not as_csv)], _inputs(data, checkpoint))
    if not as_csv and out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is an existing file; give a folder (or a path ending in .csv)")
    if as_csv and append:
        raise OutputError(f"--append adds to an --out folder; a CSV --out ({out}) is written whole")
    _check_output(out, folder=not as_csv)
    sink = StreamedFile(out) if as_csv else DecodedFolder(out, overwrite=overwrite, append=append)
    with sink:  # owned from here: a second writer is refused, an earlier decode needs overwrite/append
        dev = resolve_device(device)
        ckpt = load_checkpoint(checkpoint, dev)
        crystals = usable_crystals(data.crystals(), ckpt.vocab, ckpt.box, data.skip_bad)
        verdicts: list[CrystalVerdict] = []
        written = 0

        def stream(chunk: Sequence[Crystal], res: DecodeResult) -> None:  # each batch written as it is decoded
            nonlocal written
            if isinstance(sink, StreamedFile):
                try:
                    res.to_csv(sink.part, append=written > 0)
                except OSError as exc:
                    raise OutputError(f"cannot write {out} ({exc.strerror or exc}); free space or choose "
                                      "another path") from exc
                sink.publish()
            else:
                verdicts.extend(write_decoded_folder(chunk, res, sink))
            written += len(chunk)

        result = decode_crystals(ckpt.model, crystals, box=ckpt.box, vocab=ckpt.vocab, config=decode_config,
                                 batch_size=batch_size, device=dev, keep_partial=True, on_batch=stream)
    if verdicts:
        from .metrics import format_verdicts

        print(format_verdicts(verdicts))
    log.info("decoded %d crystals (%.2f /s) into %s", len(result), result.structures_per_second, out)
    print(f"decoded {len(result)} crystals ({result.structures_per_second:.2f} structures/s, "
          f"{result.n_no_atoms} without atoms) -> {out}")
    if result.interrupted:
        raise KeyboardInterrupt(f"interrupted: the first {len(result)} crystals were decoded and written to {out}")
    return result


def write_decoded_folder(crystals: Sequence[Crystal], result: DecodeResult, out,
                         verdicts: Sequence[CrystalVerdict] | None = None, append: bool = False,
                         overwrite: bool = False) -> list[CrystalVerdict]:
    """One CIF per decoded crystal and `summary.csv` (a `CrystalVerdict` row per input crystal and
    `cif_file`, the file holding its decode) in the folder `out`: a path, or an open
    `outputs.DecodedFolder` (batch by batch, as `run_decode` streams). File names come from the
    ids, sanitised and unique (`outputs.safe_stem`). A path that already holds a decode is refused
    unless `append` (rows added) or `overwrite` (its listed files replaced). Returns the verdicts
    (computed unless given)."""
    from .outputs import DecodedFolder

    verdicts = list(verdicts) if verdicts is not None else crystal_verdicts(crystals, result)
    entries = [(c.id, None if st is None else st.to(fmt="cif"), v.to_dict())
               for c, st, v in zip(crystals, result.to_structures(strict=False), verdicts)]
    if isinstance(out, DecodedFolder):
        out.add(entries)
    else:
        with DecodedFolder(out, overwrite=overwrite, append=append) as folder:
            folder.add(entries)
    return verdicts


def format_table(metrics: dict) -> str:
    """Plain-text table of a metrics dict (one row per metric, named as `reference.METRICS` names it)."""
    from .reference import METRICS

    names = {k: METRICS[k].title() if k in METRICS else k for k in metrics}
    width = max(len(n) for n in names.values())
    lines = []
    for k, v in metrics.items():
        if isinstance(v, float):
            txt = "–" if not math.isfinite(v) else (f"{v:.6g}" if abs(v) < 1e4 else f"{v:.4e}")
        else:
            txt = "n/a" if v is None else str(v)
        lines.append(f"{names[k]:<{width}}  {txt}")
    return "\n".join(lines)


def _json_safe(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass(frozen=True)
class Evaluation:
    """What `run_evaluate` measured: the metrics of the decodes and what they are of."""

    label: str
    """The data and the fields, e.g. 'lcs6_test (learned fields of lcs6)'."""
    metrics: ReconstructionMetrics
    n_requested: int
    """Crystals asked for; fewer were decoded when the run was interrupted."""

    @property
    def interrupted(self) -> bool:
        return self.metrics.n_structures < self.n_requested

    def to_dict(self) -> dict:
        """The `metrics.METRIC_KEYS` dict (plus `partial_of` when interrupted): the JSON written."""
        out = self.metrics.to_dict()
        if self.interrupted:
            out["partial_of"] = self.n_requested
        return out

    def __str__(self) -> str:
        partial = (f" (PARTIAL: interrupted after {self.metrics.n_structures} of {self.n_requested} crystals)"
                   if self.interrupted else "")
        return f"{self.label}{partial}\n{format_table(self.metrics.to_dict())}"


def run_evaluate(
    data: DataSource | str | Path,
    checkpoint: str | Path | None = None,
    *,
    decode_config: DecodeConfig = DecodeConfig(),
    device: str = "auto",
    batch_size: int = 64,
    box_from: DataSource | str | Path | None = None,
    match: bool = True,
    progress: bool = True,
    json_out: str | Path | None = None,
    verbose: bool = True,
) -> Evaluation:
    """Decode `data` and compute every metric; prints the table (`verbose`) and returns it.

    checkpoint: the model's fields, vocabulary and training box. None: the data's exact
    ground-truth fields (no model; it measures the decoder), with the box of the data itself or
    of `box_from` (e.g. the training CSV, as a model would have). `json_out`: the metrics as JSON
    (non-finite values null). Ctrl-C keeps the metrics of what was decoded (printed, written) and
    raises KeyboardInterrupt saying so.
    """
    data = DataSource.of(data)
    box_from = None if box_from is None else DataSource.of(box_from, split="train")
    if json_out is not None:
        from .outputs import Output, check_apart

        check_apart([Output("--json", Path(json_out))], _inputs(data, checkpoint, box_from))
        _check_output(Path(json_out), folder=False)
    dev = resolve_device(device)
    crystals = data.crystals()
    if checkpoint is None:
        vocab = SpeciesVocab.from_crystals(crystals)
        box = BoundingBox.from_crystals(crystals if box_from is None else box_from.crystals())
        model, fields = "exact", "exact fields"
    else:
        ckpt = load_checkpoint(checkpoint, dev)
        vocab, box, model, fields = ckpt.vocab, ckpt.box, ckpt.model, f"learned fields of {checkpoint}"
        crystals = usable_crystals(crystals, vocab, box, data.skip_bad)
    result = decode_crystals(model, crystals, box=box, vocab=vocab, config=decode_config,
                             batch_size=batch_size, device=dev, progress=progress, keep_partial=True)
    ev = Evaluation(f"{data.label} ({fields})", metrics_of(crystals[: len(result)], result, match=match,
                                                            progress=progress), len(crystals))
    if verbose:
        print(ev)
    if json_out is not None:
        _write_json(Path(json_out), ev.to_dict())
    if ev.interrupted:  # the metrics of what was decoded are printed (and written); say so
        raise KeyboardInterrupt(f"interrupted: metrics of the first {len(result)} of {len(crystals)} crystals"
                                + (f" written to {json_out}" if json_out else " printed above"))
    return ev


def _write_json(path: Path, obj: dict) -> None:
    from .errors import OutputError
    from .outputs import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write --json {path} ({exc.strerror or exc}); choose another path") from exc


def held_out_crystals(model: str, limit: int | None = None) -> list[Crystal]:
    """The held-out test crystals of a shipped model (`nesf_viz.assets.CHECKPOINTS`), which it
    never trained on, in their file's order: the embedded test split for 'synthetic', the LCS6Å
    test split for a model of the 'lcs6' dataset (packaged, so always here), else the experiment's
    test split of the model's dataset (`nesf_viz.experiment.make_tasks`; `DatasetUnavailable` when
    its file is absent). Cells as given (the shared files hold conventional cells)."""
    from .assets import CHECKPOINTS
    from .errors import DatasetError

    if model not in CHECKPOINTS:
        raise DatasetError(f"no shipped model named {model!r}; shipped: {', '.join(CHECKPOINTS)}")
    dataset = CHECKPOINTS[model].dataset
    if dataset == "synthetic":
        return load_crystals("synthetic", "test", limit=limit)
    if dataset == "lcs6":
        return load_crystals("lcs6_test", limit=limit)
    from .experiment import make_tasks

    return list(make_tasks(dataset)[0].test[:limit])


@dataclass(frozen=True)
class SuccessAndFailure:
    """A success beside a failure of one model: what `success_and_failure_of` found."""

    crystals: list[Crystal]
    """The crystals decoded, in order (the search stops at the first failure)."""
    decoded: list[Crystal]
    verdicts: list[CrystalVerdict]
    right: int | None
    """Index of the first crystal decoded right (None: none was)."""
    wrong: int | None
    """Index of the first crystal decoded wrong (None: none of `crystals` was)."""

    def __str__(self) -> str:
        from .metrics import format_site_errors, format_verdicts, verdict_summary

        shown = [i for i in (self.right, self.wrong) if i is not None]
        table = format_verdicts([self.verdicts[i] for i in shown]).splitlines()[:-1]  # its summary is of these two
        parts = [f"{len(self.crystals)} crystals decoded: {verdict_summary(self.verdicts)}", "\n".join(table)]
        if self.wrong is None:
            parts.append(f"(no failure among these {len(self.crystals)}: the first one is shown alone)")
        parts += [format_site_errors(self.crystals[i], self.decoded[i]) for i in shown]
        return "\n\n".join(parts)

    __repr__ = __str__


def success_and_failure_of(checkpoint, crystals: Sequence[Crystal], *, config: DecodeConfig | None = None,
                           chunk: int = 8, limit: int = 64) -> SuccessAndFailure:
    """Decode `crystals` with a checkpoint's model (its box and vocabulary, the fast decoder unless
    `config`) `chunk` at a time until one is decoded wrong or `limit` were tried, so a notebook can
    show a failure beside a success of a model that rarely fails. Prints as the two verdicts and
    their per-site errors."""
    from .metrics import success_and_failure

    config = config or DecodeConfig.fast()
    done, decoded, verdicts = [], [], []
    right = wrong = None
    for start in range(0, min(limit, len(crystals)), chunk):
        part = list(crystals[start: min(start + chunk, limit)])
        res = decode_crystals(checkpoint.model, part, box=checkpoint.box, vocab=checkpoint.vocab, config=config,
                              device=next(checkpoint.model.parameters()).device, progress=False)
        done += part
        decoded += res.to_crystals()
        verdicts += crystal_verdicts(part, res)
        right, wrong = success_and_failure(verdicts)
        if wrong is not None:
            break
    return SuccessAndFailure(done, decoded, verdicts, right, wrong)
