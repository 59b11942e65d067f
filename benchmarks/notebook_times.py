"""How long each notebook of notebooks/ runs top to bottom, as a reader runs it (default size).

    python benchmarks/notebook_times.py                       # -> benchmarks/results/notebooks/notebook_times.json
    python benchmarks/notebook_times.py --size small --out /tmp/t.json

Each notebook is copied into a temporary folder and executed there with nbclient (a fresh
kernel each, outputs written under that folder); the JSON holds the seconds per notebook and
the machine. `python benchmarks/tables.py` shows them in the README and the docs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nesf_viz.bench import machine, write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "notebooks" / "notebook_times.json"


def run_notebook(path: Path, work: Path, env: dict[str, str], timeout_s: int) -> float:
    import nbformat
    from nbclient import NotebookClient

    work.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(shutil.copy(path, work / path.name), as_version=4)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits the environment
    try:
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(work)}},
                       store_widget_state=False).execute()
        return time.perf_counter() - t0
    finally:
        os.environ.clear()
        os.environ.update(old)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["default", "small"], default="default",
                    help="NESF_VIZ_SIZE of the run (default: unset, the size a reader runs)")
    ap.add_argument("--only", nargs="+", default=None, help="notebook stems, e.g. 01_concept")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if a.only:
        notebooks = [p for p in notebooks if p.stem in a.only]
    times = {}
    with tempfile.TemporaryDirectory(prefix="nesf_nb_times_") as tmp:
        for path in notebooks:
            # a reader's first run: outputs and the survey cache (notebook 06) start empty
            env = {"NESF_VIZ_OUT": str(Path(tmp) / "out" / path.stem), "NESF_VIZ_CACHE": str(Path(tmp) / "cache")}
            if a.size == "small":
                env["NESF_VIZ_SIZE"] = "small"
            else:
                os.environ.pop("NESF_VIZ_SIZE", None)
            times[path.stem] = run_notebook(path, Path(tmp) / path.stem, env, a.timeout)
            print(f"{path.stem}: {times[path.stem]:.0f} s", flush=True)
    write_json(a.out, {"size": a.size, "machine": machine(), "python": sys.version.split()[0], "notebooks": times})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
