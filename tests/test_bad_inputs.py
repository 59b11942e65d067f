"""Bad input through the CLI: exit 2, a line naming the problem, no traceback, inputs unchanged."""

import hashlib
import subprocess
import sys

import pytest


@pytest.fixture
def files(tmp_path):
    (tmp_path / "header_only.csv").write_text("material_id,cif\n")
    (tmp_path / "latin1.csv").write_bytes("material_id,cif\nx,caf\xe9\n".encode("latin-1"))
    (tmp_path / "latin1.cif").write_bytes("data_x\n_cell_length_a caf\xe9\n".encode("latin-1"))
    (tmp_path / "synthetic_mine.csv").write_text("material_id,cif\n")
    (tmp_path / "mixed.csv").write_text("material_id,cif\n" + "".join(
        f'{name},"{_cif(el)}"\n' for name, el in [("nacl", "Na"), ("uranium-1", "U"), ("kcl", "K")]))
    head = ("data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n"
            "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
            "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n")
    (tmp_path / "zero_atoms.cif").write_text(head)
    (tmp_path / "nan_coords.cif").write_text(head + "Na1 Na nan 0 0\nCl1 Cl 0.5 0.5 0.5\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "results.json").write_text("{broken")
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"an earlier run")
    return tmp_path


def _cif(metal):
    from pymatgen.core import Lattice, Structure

    return str(Structure(Lattice.cubic(5.6), [metal, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif"))


TRAIN = ["train", "--val", "synthetic:30", "--device", "cpu"]
CASES = [
    (["train", "--train", "synthetic", "--val", "synthetic", "--out", "o", "--limit", "-1"],
     "argument --limit: must be a positive integer, got -1"),
    (["train", "--train", "synthetic", "--val", "synthetic", "--out", "o", "--batch-size", "0"],
     "argument --batch-size: must be a positive integer"),
    (["train", "--train", "synthetic", "--val", "synthetic", "--out", "o", "--epochs", "-5"],
     "argument --epochs: must be a positive integer"),
    (["train", "--train", "synthetic", "--val", "synthetic", "--out", "o", "--max-minutes", "-1"],
     "argument --max-minutes: must be a positive number"),
    (["train", "--train", "synthetic", "--val", "synthetic", "--out", "o", "--device", "gpu"],
     "argument --device: must be auto, cpu, cuda or cuda:N"),
    ([*TRAIN, "--train", "{d}/header_only.csv", "--out", "o"], "has a header but no rows"),
    ([*TRAIN, "--train", "{d}/latin1.csv", "--out", "o"], "is not UTF-8 text"),
    ([*TRAIN, "--train", "{d}/latin1.cif", "--out", "o"], "latin1.cif: not UTF-8 text"),
    # a file named like the embedded data is read as that file, not replaced by the embedded data
    ([*TRAIN, "--train", "{d}/synthetic_mine.csv", "--out", "o"], "synthetic_mine.csv has a header but no rows"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "{d}/run"], "already holds a training run"),
    (["export", "--checkpoint", "{d}/run/last.pt", "--out", "{d}/run/last.pt"], "would overwrite its source"),
    # found before any decoding, naming the crystal and the element
    (["decode", "--checkpoint", "synthetic", "--data", "{d}/mixed.csv", "--out", "o"],
     "element(s) U in 'uranium-1' not in the model's species vocabulary"),
    (["evaluate", "--checkpoint", "synthetic", "--data", "{d}/mixed.csv"], "element(s) U in 'uranium-1'"),
    # pymatgen's internals ("integer modulo by zero", "no structures") become the named errors
    (["decode", "--checkpoint", "synthetic", "--data", "{d}/zero_atoms.cif", "--out", "o"],
     "atom-site loop has no rows (an empty structure)"),
    (["decode", "--checkpoint", "synthetic", "--data", "{d}/nan_coords.cif", "--out", "o"],
     "non-finite atom coordinate (nan)"),
    (["benchmark", "--datasets", "synthetic", "--out", "{d}/bench", "--epochs", "1", "--device", "cpu"],
     "results.json is not a results file this benchmark wrote"),
    # unwritable outputs found before any work
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:2", "--out", "{d}/mixed.csv/o"], "cannot be written"),
    (["evaluate", "--fields", "exact", "--data", "synthetic:2", "--json", "{d}/mixed.csv/m.json"], "cannot be written"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "{d}/mixed.csv/run"], "cannot be written"),
    (["export", "--checkpoint", "synthetic", "--out", "{d}/mixed.csv/x.pt"], "cannot write"),
    (["evaluate", "--fields", "exact", "--data", "synthetic:2", "--json", "{d}/run"], "is a folder; give a file path"),
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:2", "--out", "{d}/folder.csv"],
     "is a folder; give a file path"),
    (["benchmark", "--datasets", "synthetic", "--out", "{d}/mixed.csv/b", "--epochs", "1"], "cannot be created"),
]


if not __import__("torch").cuda.is_available():  # a device this machine lacks: one line, not a torch error
    CASES += [
        (["decode", "--checkpoint", "synthetic", "--data", "synthetic:2", "--out", "o", "--device", "cuda"],
         "torch sees no CUDA GPU"),
        ([*TRAIN[:-2], "--train", "synthetic:30", "--out", "o", "--device", "cuda:0"], "torch sees no CUDA GPU"),
    ]


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:1] + [m[:30]]) for a, m in CASES])
def test_bad_input_is_one_named_line_and_leaves_inputs_alone(files, args, message):
    before = _hashes(files)
    argv = [a.format(d=files) for a in args]
    r = subprocess.run([sys.executable, "-m", "nesf_viz.cli", *argv], capture_output=True, text=True,
                       timeout=300, cwd=files)
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stderr
    assert _hashes(files) == before


def test_skip_bad_decodes_the_rest_and_names_what_it_skipped(files):
    before = _hashes(files)
    r = subprocess.run([sys.executable, "-m", "nesf_viz.cli", "decode", "--checkpoint", "synthetic", "--data",
                        str(files / "mixed.csv"), "--out", "dec", "--decode", "fast", "--skip-bad", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, cwd=files)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped 1 of 3 crystals" in r.stderr and "U in 'uranium-1'" in r.stderr
    assert sorted(p.name for p in (files / "dec").glob("*.cif")) == ["kcl.cif", "nacl.cif"]
    assert {k: v for k, v in _hashes(files).items() if k in before} == before
