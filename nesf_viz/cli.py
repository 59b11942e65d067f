"""`nesf-viz` command line: train, decode, evaluate, demo."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import re
import sys

from .decode import DECODERS
from .errors import NeSFError
from .model import PAPER_POSITION_WIDTH, position_field_channels


def _number(text: str, kind: type, what: str):
    """`text` as an int or a finite float, else the argparse error saying what to give."""
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if kind is float and not math.isfinite(v):  # inf is refused like nan: a rate or budget of inf means nothing
        raise argparse.ArgumentTypeError(f"must be {what}, got {text} (not a finite number)")
    return v


def _positive_int(text: str) -> int:
    v = _number(text, int, "a positive integer")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return v


def _non_negative_int(text: str) -> int:
    v = _number(text, int, "an integer >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return v


SEED_MAX = 2**32 - 1


def _seed(text: str) -> int:
    v = _number(text, int, f"an integer from 0 to {SEED_MAX}")
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_MAX}, got {text}")
    return v


def _positive_float(text: str) -> float:
    v = _number(text, float, "a positive number")
    if not v > 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _non_negative_float(text: str) -> float:
    v = _number(text, float, "a number >= 0")
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return v


def _fraction(text: str) -> float:
    v = _number(text, float, "a number in [0, 1)")
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return v


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def _add_pe_args(p) -> None:
    p.add_argument("--pe-freqs", type=_non_negative_int, default=0,
                   help="positional encoding frequencies (option; 0 = off, paper)")
    p.add_argument("--pe-wavelength", type=_positive_float, default=2.0,
                   help="longest encoded wavelength in A (reference 2 A, which makes the encoding 2 A-periodic)")
    p.add_argument("--pe-keep-input", action="store_true", help="feed the query point beside its encoding")
    p.add_argument("--position-width", type=_positive_int, default=PAPER_POSITION_WIDTH,
                   help="option: hidden width of the position field MLP (paper 128; its first layer is twice "
                        "as wide; 256: the wide field, slower per step; docs: recipes)")


DECODE_HELP = ("paper: DecodeConfig(), the reference's settings; fast: particles in the predicted cell, early stop, "
               "<= 32 moves; coarse: fast on a 1 A grid, an eighth of the particles (docs: decode speed)")
RECIPE_HELP = ("paper: the paper (float32, batch 128, Adam 1e-3 halved every 640 epochs, 3200 epochs); "
               "fast: paper + bf16 autocast + batch 64; bf16: paper + bf16 autocast; quick: the "
               "time-to-accuracy recipe (bf16, batch 64, species weight 1, no encoder dropout, "
               "subsampled queries, cosine schedule over 60 epochs; docs: recipes)")


def _add_recipe_args(p) -> None:
    """The recipe and every ingredient as its own option (unset: the recipe's value)."""
    from .model import NeSFConfig
    from .train_config import RECIPES, TrainConfig

    # the help quotes the config dataclasses, so it cannot drift from them
    paper, quick, net = TrainConfig.paper(), TrainConfig.quick(), NeSFConfig(num_species=1)
    p.add_argument("--recipe", choices=list(RECIPES), default="paper", help=RECIPE_HELP)
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"epochs (paper {paper.epochs}, quick {quick.epochs})")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help=f"crystals per step (paper {paper.batch_size}, quick {quick.batch_size})")
    p.add_argument("--lr", type=_non_negative_float, default=None,
                   help=f"(peak) learning rate (paper {paper.learning_rate:g}, quick {quick.learning_rate:g})")
    p.add_argument("--lr-schedule", choices=["step", "cosine"], default=None,
                   help=f"step: halved every {paper.lr_halving_epochs} epochs (paper); cosine: warm-up, then "
                        "cosine decay over --epochs (quick)")
    p.add_argument("--warmup-epochs", type=_non_negative_float, default=None,
                   help="cosine schedule: linear warm-up epochs")
    p.add_argument("--species-weight", type=_non_negative_float, default=None,
                   help=f"species loss weight (paper {paper.species_loss_weight:g}, quick "
                        f"{quick.species_loss_weight:g}; positions weigh {paper.position_loss_weight:g})")
    p.add_argument("--encoder-dropout", type=_fraction, default=None,
                   help=f"encoder dropout (paper {net.encoder_dropout:g}, quick {quick.encoder_dropout:g})")
    p.add_argument("--global-queries", type=_positive_int, default=None,
                   help="random global grid points per crystal and step (default: the whole grid)")
    p.add_argument("--species-queries", type=_positive_int, default=None,
                   help="random species-cube points per atom and step (default: all 216)")
    p.add_argument("--pair-queries", type=_positive_float, default=None, metavar="ANGSTROM",
                   help="option: also train the position field between every two atoms closer than this "
                        "(e.g. 2.5; off in the paper), where close-pair atoms are otherwise missed")
    p.add_argument("--cell-queries", type=_positive_int, default=None, metavar="N",
                   help="option: N position queries uniform in each crystal's own cell (+1 A) instead of the "
                        "global grid over the whole training box (where the in-cell decoders look; off in the paper)")
    p.add_argument("--origin-shift", action="store_true", default=None,
                   help="option: train on each crystal with its origin moved at random every step (the same "
                        "crystal, another view; off in the paper)")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast (faster per step where the hardware runs bf16 natively: CUDA, a CPU with "
                        "AVX512-BF16 or AMX; much slower where torch emulates it; the quick recipe uses it only "
                        "where native)")


PRECISION_NAMES = {True: "bf16", False: "float32", "auto": "bf16 where native, else float32"}
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ..."
DATA_HELP = ("a CSV with a cif column, a folder of .cif files, one .cif file, a dataset name (lcs6_test, "
             "perov_5_val, ...: nesf_viz.datasets.FILES) or 'synthetic[:N]' (its test split)")
CHECKPOINT_HELP = "a .pt file, a training output folder, or a shipped model's name (synthetic, lcs6, ...)"
SKIP_BAD_HELP = "skip unreadable structures and elements outside the model's vocabulary (named) instead of stopping"


def _recipe_options(a) -> dict:
    """The ingredients given on the command line beside --recipe and --epochs (unset ones left out)."""
    given = {"batch_size": a.batch_size, "learning_rate": a.lr, "lr_schedule": a.lr_schedule,
             "warmup_epochs": a.warmup_epochs, "species_loss_weight": a.species_weight,
             "encoder_dropout": a.encoder_dropout, "global_queries_per_crystal": a.global_queries,
             "species_queries_per_atom": a.species_queries, "mixed_precision": a.mixed_precision,
             "pair_max_angstrom": a.pair_queries, "augment_origin_shift": a.origin_shift,
             "cell_queries_per_crystal": a.cell_queries}
    return {k: v for k, v in given.items() if v is not None}


def _train_config(a, **extra):
    from .train_config import make_train_config

    return make_train_config(a.recipe, epochs=a.epochs, **_recipe_options(a), **extra)


def _add_train(sub) -> None:
    from .train_config import TrainConfig

    p = sub.add_parser("train", help="train NeSF on crystals")
    p.add_argument("--train", required=True, help="CSV with a cif column, a CIF folder, or 'synthetic[:N]'")
    p.add_argument("--val", required=True, help="validation data (same forms as --train)")
    p.add_argument("--out", required=True, help="output folder for last.pt / best.pt")
    _add_recipe_args(p)
    p.add_argument("--patience", type=_non_negative_int, default=None,
                   help=f"early stopping patience in epochs (paper {TrainConfig().early_stopping_patience_epochs}; "
                        "quick: off); 0 = off")
    p.add_argument("--max-minutes", type=_positive_float, default=None, help="wall-clock budget")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the weights, the query sampling and the embedded data's split (default 0)")
    p.add_argument("--limit", type=_positive_int, default=None, help="use only the first N training structures")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUT that already holds a run")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="warm start: a new run from this checkpoint's weights, vocabulary and network "
                        "(fresh optimizer and schedule), e.g. a shipped model's name or file")
    p.add_argument("--keep-cell", action="store_true", help="keep cells as given (default: conventional standard cell)")
    p.add_argument("--vae", action="store_true", help="variational latent (option; off in the paper)")
    _add_pe_args(p)
    p.add_argument("--periodic", action="store_true", help="minimum-image ground-truth fields (option)")
    p.add_argument("--paper-sampling", action="store_true",
                   help="the paper's 0.5 A sigmas instead of the reference code's")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable structures (counted) instead of stopping")


def _cmd_train(a) -> int:
    from .checkpoints import saved_train_config
    from .data import load_crystals
    from .model import NeSFConfig
    from .sampling import SamplingConfig
    from .train import train
    from .train_config import resumed_config

    on_error = "skip" if a.skip_bad else "raise"
    tr = load_crystals(a.train, "train", not a.keep_cell, on_error, limit=a.limit, seed=a.seed)
    va = load_crystals(a.val, "val", not a.keep_cell, on_error, seed=a.seed)
    paper_sigmas = SamplingConfig.paper()
    cfg = _train_config(
        a, seed=a.seed, device=a.device, max_minutes=a.max_minutes, periodic_targets=a.periodic or None,
        local_sigma_angstrom=paper_sigmas.local_sigma_angstrom if a.paper_sampling else None,
        species_sigma_angstrom=paper_sigmas.species_sigma_angstrom if a.paper_sampling else None)
    if a.patience is not None:
        cfg = dataclasses.replace(cfg, early_stopping_patience_epochs=a.patience or None)
    if a.resume:  # the run's own recipe (recipes.resumed_config); --epochs unset: its own epochs
        saved = saved_train_config(a.out)
        cfg = resumed_config(saved, dataclasses.replace(cfg, epochs=a.epochs or saved.epochs))
    mcfg = NeSFConfig(num_species=1, vae=a.vae, positional_encoding_freqs=a.pe_freqs,
                      positional_encoding_longest_wavelength_angstrom=a.pe_wavelength,
                      positional_encoding_keep_input=a.pe_keep_input,
                      position_field_channels=position_field_channels(a.position_width))
    print(f"recipe {a.recipe}: {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.learning_rate:g} "
          f"({cfg.lr_schedule}), species weight {cfg.species_loss_weight:g}, "
          f"{PRECISION_NAMES[cfg.mixed_precision]}" + (f", budget {cfg.max_minutes:g} min" if cfg.max_minutes else ""))
    init = None
    if a.init_from and not a.resume:
        from .assets import resolve_checkpoint

        init = resolve_checkpoint(a.init_from)
    res = train(tr, va, a.out, cfg, mcfg, resume=a.resume, overwrite=a.overwrite, init_from=init)
    h = res.history
    if h:
        print(f"{len(h['epoch'])} epochs logged; last train loss {h['loss'][-1]:.4f}, "
              f"val loss {h['val_loss'][-1]:.4f}; stopped: {res.stopped_because}")
    written = [str(p) for p in (res.last_checkpoint, res.best_checkpoint) if p is not None]
    if written:  # only files that exist: a run can end (Ctrl-C) before it wrote one
        print(f"checkpoints: {' '.join(written)}")
    return 130 if res.stopped_because.startswith("interrupted") else 0


def _add_decode(sub) -> None:
    p = sub.add_parser("decode", help="encode and decode crystals with a trained checkpoint; write the decoded CIFs")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out", required=True, help="a folder (one CIF per crystal + summary.csv saying how right "
                                                "each decode is) or a path ending in .csv (material_id,cif)")
    p.add_argument("--decode", choices=list(DECODERS), default="paper", help=DECODE_HELP)
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    p.add_argument("--limit", type=_positive_int, default=None, help="decode only the first N crystals")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="crystals decoded together")
    p.add_argument("--keep-cell", action="store_true", help="keep cells as given (default: conventional standard cell)")
    p.add_argument("--skip-bad", action="store_true",
                   help=SKIP_BAD_HELP)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true",
                   help="an --out folder that holds an earlier decode: remove the files its summary.csv lists first")
    g.add_argument("--append", action="store_true",
                   help="an --out folder that holds an earlier decode: add to it (its summary.csv gains rows)")


def _checkpoint_arg(name: str | None) -> str | None:
    from .assets import resolve_checkpoint

    return None if name is None else str(resolve_checkpoint(name))


def _data_source(a):
    """--data, --limit, --keep-cell, --skip-bad as a `data.DataSource` (the held-out split of 'synthetic')."""
    from .data import DataSource

    return DataSource(a.data, split="test", limit=a.limit, conventional=not a.keep_cell, skip_bad=a.skip_bad)


def _cmd_decode(a) -> int:
    from .decode import DecodeConfig
    from .evaluate import run_decode

    run_decode(_checkpoint_arg(a.checkpoint), _data_source(a), a.out, decode_config=DecodeConfig.preset(a.decode),
               device=a.device, batch_size=a.batch_size, overwrite=a.overwrite, append=a.append)
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="decode and compute the paper's metrics")
    p.add_argument("--data", required=True, help=DATA_HELP)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help=CHECKPOINT_HELP + " (or --fields exact)")
    g.add_argument("--fields", choices=["exact"], help="exact ground-truth fields (no model): tests the decoder")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the metrics to this JSON file (they are printed either way)")
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N crystals")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    p.add_argument("--decode", choices=list(DECODERS), default="paper", help=DECODE_HELP)
    p.add_argument("--keep-cell", action="store_true", help="keep cells as given (default: conventional standard cell)")
    p.add_argument("--skip-bad", action="store_true",
                   help=SKIP_BAD_HELP)


def _cmd_evaluate(a) -> int:
    from .decode import DecodeConfig
    from .evaluate import run_evaluate

    run_evaluate(_data_source(a), None if a.fields else _checkpoint_arg(a.checkpoint),
                 decode_config=DecodeConfig.preset(a.decode), device=a.device, json_out=a.json)
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job on the embedded data: a short training run and the "
                                    "shipped model, both decoded on held-out crystals, and a report")
    p.add_argument("--out", default="out/demo", help="report.html, checkpoint/, decoded/ CIFs")
    p.add_argument("--minutes", type=_positive_float, default=2.0, help="budget of the short training run")
    p.add_argument("--n-train", type=_positive_int, default=480, help="embedded training crystals of the short run")
    p.add_argument("--n-test", type=_positive_int, default=48, help="held-out test crystals decoded by both models")
    p.add_argument("--checkpoint", default=None, help="the converged model to show (default: the shipped one)")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)


def _cmd_demo(a) -> int:
    from .demo import run_demo

    run_demo(a.out, minutes=a.minutes, n_train=a.n_train, n_test=a.n_test, device=a.device,
             checkpoint=a.checkpoint)
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="slim copy of a checkpoint for shipping (drops the optimizer state)")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--out", required=True, help="the slim .pt file to write")


def _cmd_export(a) -> int:
    from .checkpoints import export_checkpoint

    print(f"wrote {export_checkpoint(_checkpoint_arg(a.checkpoint), a.out)}")
    return 0


def _add_benchmark(sub) -> None:
    from .experiment import DATASETS

    p = sub.add_parser("benchmark", help="the experiment: train with seeds, select by val loss, "
                                         "evaluate held-out splits, tabulate next to the paper")
    p.add_argument("--datasets", nargs="+", default=["lcs6"], choices=DATASETS, metavar="DATASET",
                   help=f"which protocols to run (default lcs6): {', '.join(DATASETS)}")
    p.add_argument("--out", default="out/benchmark", help="results.md, results.json, time_to_accuracy.html, runs/")
    p.add_argument("--seeds", type=_seed, nargs="+", default=[0], help="one training run per seed (default: 0)")
    _add_recipe_args(p)
    p.add_argument("--max-minutes", type=_positive_float, default=None,
                   help="training budget per run (CPU budget mode)")
    p.add_argument("--decode", choices=list(DECODERS), default="paper", help="decoder for the held-out split")
    p.add_argument("--eval-limit", type=_positive_int, default=None, help="evaluate only the first N held-out crystals")
    p.add_argument("--probe-minutes", type=_positive_float, default=2.0, help="time-to-accuracy snapshot interval")
    p.add_argument("--probe-crystals", type=_positive_int, default=32,
                   help="validation crystals each snapshot is decoded on (the time-to-accuracy curve)")
    p.add_argument("--folds", type=_positive_int, default=20, help="YBCO13 folds to run (first N)")
    p.add_argument("--augment-n", type=int, default=2400, help="synthetic structures for icsg3d+synthetic")
    p.add_argument("--limit-train", type=_positive_int, default=None, help="first N training structures (smoke tests)")
    _add_pe_args(p)
    p.add_argument("--periodic", action="store_true", help="periodic training targets and decoding (option)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="warm start every run from this checkpoint (a shipped model's name or a file)")
    p.add_argument("--data-root", default=None, help="default: $NESF_VIZ_DATA or ../shared/data")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)


def _cmd_benchmark(a) -> int:
    from .experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(seeds=tuple(a.seeds), recipe=a.recipe, max_minutes=a.max_minutes, epochs=a.epochs,
                         train_options=tuple(sorted(_recipe_options(a).items())),
                         decode=a.decode, eval_limit=a.eval_limit, probe_minutes=a.probe_minutes,
                         probe_crystals=a.probe_crystals, init_from=a.init_from,
                         device=a.device, ybco13_folds=a.folds, augment_synthetic_n=a.augment_n,
                         limit_train=a.limit_train, positional_encoding_freqs=a.pe_freqs, periodic=a.periodic,
                         positional_encoding_longest_wavelength_angstrom=a.pe_wavelength,
                         positional_encoding_keep_input=a.pe_keep_input, position_width=a.position_width)
    run_experiment(a.datasets, cfg, a.out, a.data_root)
    return 0


COMMANDS = {"export": _cmd_export, "train": _cmd_train, "decode": _cmd_decode, "evaluate": _cmd_evaluate,
            "demo": _cmd_demo,
            "benchmark": _cmd_benchmark}


def build_parser() -> argparse.ArgumentParser:
    """The `nesf-viz` argument parser with every subcommand (tests check that every option says
    what it does)."""
    parser = argparse.ArgumentParser(prog="nesf-viz", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each step does (INFO level)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_decode, _add_evaluate, _add_demo, _add_export, _add_benchmark):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[a.command](a)
    except NeSFError as exc:
        print(f"nesf-viz {a.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        why = str(exc) or ("training can continue with --resume" if a.command in ("train", "benchmark", "demo")
                           else "nothing was written")
        print(f"nesf-viz {a.command}: {why if str(exc) else 'interrupted (' + why + ')'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
