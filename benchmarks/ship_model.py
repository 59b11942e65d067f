"""Ship a trained model: its slim checkpoint and its measured record, from one benchmark run.

    python benchmarks/ship_model.py --results out/bench-perov5/results.json --name perov5

reads the run's row of `results.json` (written by `nesf-viz benchmark`), exports the run's
best.pt to `nesf_viz/assets/<name>.pt` and writes `nesf_viz/assets/<name>.json`: the held-out
metrics, how long it trained, on what machine, the time-to-accuracy curve and the command that
made it. The package reads those records (`nesf_viz.assets.CHECKPOINTS`); the README's and the
docs' tables are generated from them (`python benchmarks/tables.py`), never typed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from nesf_viz.assets import CHECKPOINTS, HERE, record_of_run
from nesf_viz.checkpoints import export_checkpoint


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="results.json of a `nesf-viz benchmark` run")
    ap.add_argument("--name", required=True, help="the shipped model's name (nesf_viz.assets)")
    ap.add_argument("--run", default=None, help="which run of the file (its 'run' key; default: the only one)")
    ap.add_argument("--recipe", default=None, help="which recipe label of the file (default: the only one)")
    ap.add_argument("--continues", default=None, metavar="NAME",
                    help="the run was warm-started from this shipped model (its record is kept beside)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="the checkpoint to ship (default: the run's best.pt beside the results file)")
    ap.add_argument("--command", default=None,
                    help="the commands that made the run, where its results.json predates recording them")
    a = ap.parse_args(argv)
    runs = json.loads(a.results.read_text())["runs"]
    rows = [r for r in runs if (a.run is None or r["run"] == a.run) and (a.recipe is None or r["recipe"] == a.recipe)]
    if len(rows) != 1:
        ap.error(f"{len(rows)} runs in {a.results} fit --run/--recipe: " + ", ".join(
            f"{r['run']} [{r['recipe']}]" for r in runs))
    row = rows[0]
    run_dir = a.results.parent / "runs" / row["recipe"] / row["run"] / f"seed{row['seed']}"
    best = a.checkpoint or run_dir / "best.pt"
    train_config = torch.load(best, map_location="cpu", weights_only=True)["train_config"]
    continues = CHECKPOINTS[a.continues].record if a.continues else None
    command = a.command or row.get("command", "")
    out = re.search(r"--out (\S+)", command)
    results = f"{out.group(1)}/results.json" if out else a.results
    command += f"; python benchmarks/ship_model.py --results {results} --name {a.name}" + (
        f" --continues {a.continues}" if a.continues else "")
    record = record_of_run(row, name=a.name, checkpoint_train_config=train_config, command=command,
                           continues=continues)
    export_checkpoint(best, HERE / f"{a.name}.pt")
    (HERE / f"{a.name}.json").write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    print(f"shipped {a.name}: {HERE / (a.name + '.pt')} + .json "
          f"(match {record['metrics'].get('match_rate_pct')}, atoms {record['metrics']['atom_count_error_pct']:.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
