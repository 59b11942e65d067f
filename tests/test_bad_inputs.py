"""Bad input through the CLI: exit 2, a line naming the problem, no traceback, inputs unchanged,
nothing written outside the output folder."""

import argparse
import csv
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch


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
    (tmp_path / "run" / "best.pt").write_bytes(b"its best epoch")
    # inputs that an output could land on
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "nacl.cif").write_text(_cif("Na"))
    (tmp_path / "data.csv").write_text("material_id,cif\n" + f'nacl,"{_cif("Na")}"\n')
    (tmp_path / "sums").mkdir()
    (tmp_path / "sums" / "summary.csv").write_text("material_id,cif\n" + f'kcl,"{_cif("K")}"\n')
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "model.pt").write_bytes(b"a checkpoint")
    # output folders that are taken: an earlier decode, files it did not write, a live writer
    (tmp_path / "prev").mkdir()
    (tmp_path / "prev" / "summary.csv").write_text("id,true_formula,cif_file\nnacl,NaCl,nacl.cif\n")
    (tmp_path / "prev" / "nacl.cif").write_text(_cif("Na"))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mine.cif").write_text(_cif("K"))
    (tmp_path / "linked").mkdir()  # a link in the output folder to an input
    (tmp_path / "linked" / "nacl.cif").symlink_to(tmp_path / "data.csv")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    (tmp_path / "two.cif").write_text(_cif("Na") + "\n" + _cif("K").replace("data_KCl", "data_KCl_second"))
    return tmp_path


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """Files too big to make for every case: damaged checkpoints and a 50 MB one-line CIF."""
    from nesf_viz.assets import checkpoint_path

    d = tmp_path_factory.mktemp("crafted")
    raw = torch.load(checkpoint_path("synthetic"), weights_only=True)
    state = dict(raw["model_state"])
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first].clone()
    state[first].view(-1)[0] = float("nan")
    damaged = {"epoch_str": {"epoch": "ten"}, "history_list": {"history": [1, 2]},
               "box_str": {"box_min_angstrom": "abc"},
               "box_order": {"box_min_angstrom": raw["box_max_angstrom"], "box_max_angstrom": raw["box_min_angstrom"]},
               "nan_weight": {"model_state": state}, "pickled": {"x": argparse.Namespace(a=1)}}
    for name, change in damaged.items():
        torch.save({**raw, **change}, d / f"{name}.pt")
    (d / "big.cif").write_text("data_x " + "A" * 50_000_000)
    return d


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
    # outputs that are, or hold, an input: refused before any work
    (["decode", "--checkpoint", "synthetic", "--data", "{d}/in/nacl.cif", "--out", "{d}/in"], "holds an input"),
    (["decode", "--checkpoint", "synthetic", "--data", "{d}/sums/summary.csv", "--out", "{d}/sums/"], "holds an input"),
    (["decode", "--checkpoint", "{d}/ck/model.pt", "--data", "synthetic:3", "--out", "{d}/ck"], "holds an input"),
    (["decode", "--checkpoint", "synthetic", "--data", "{d}/data.csv", "--out", "{d}/data.csv"], "is the input itself"),
    (["evaluate", "--fields", "exact", "--data", "{d}/data.csv", "--json", "{d}/data.csv"], "is the input itself"),
    (["export", "--checkpoint", "{d}/run", "--out", "{d}/run/last.pt"], "is last.pt of the run"),
    (["export", "--checkpoint", "{d}/run/best.pt", "--out", "{d}/run/last.pt"], "would overwrite its source"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "{d}/run", "--overwrite", "--init-from", "{d}/run/best.pt"],
     "would overwrite its source"),
    # output folders that are taken
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "{d}/prev"],
     "already holds decoded results (1 .cif files, 1 summary rows); add --overwrite"),
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "{d}/foreign", "--append"],
     "does not list (mine.cif)"),
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "{d}/foreign", "--overwrite"],
     "does not list (mine.cif)"),
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "{d}/linked"],
     "already holds decoded results (1 .cif files, 0 summary rows)"),
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "{d}/linked", "--append"],
     "does not list (nacl.cif)"),
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "{d}/busy"],
     "is being written by another process"),
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "o", "--overwrite", "--append"],
     "argument --append: not allowed with argument --overwrite"),
    (["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "o.csv", "--append"],
     "--append adds to an --out folder"),
    # numbers that must be finite, seeds that must fit
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--lr", "inf"], "argument --lr: must be a number >= 0, got inf"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--species-weight", "inf"], "--species-weight: must be a"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--warmup-epochs", "inf"], "--warmup-epochs: must be a number"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--max-minutes", "nan"], "--max-minutes: must be a positive"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--encoder-dropout", "1.5"], "must be a number in [0, 1)"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--seed", "-1"], "argument --seed: must be an integer from 0"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--seed", "1e23"], "argument --seed: must be an integer from 0"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--seed", str(10**23)], "must be an integer from 0"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--pe-freqs", "-1"], "argument --pe-freqs: must be an integer"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--pe-wavelength", "0"], "--pe-wavelength: must be a positive"),
    # silent nonsense: a loss that turns infinite, a budget that trains nothing
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--epochs", "2", "--species-weight", "1e308"],
     "training loss became inf at step 1 of epoch 1"),
    ([*TRAIN, "--train", "synthetic:30", "--out", "o", "--max-minutes", "1e-9"],
     "no epoch was trained and no checkpoint written"),
    # damaged checkpoints
    (["decode", "--checkpoint", "{c}/epoch_str.pt", "--data", "synthetic:3", "--out", "o"], "epoch is 'ten'"),
    (["decode", "--checkpoint", "{c}/history_list.pt", "--data", "synthetic:3", "--out", "o"], "history is a list"),
    (["decode", "--checkpoint", "{c}/box_str.pt", "--data", "synthetic:3", "--out", "o"], "not 6 finite numbers"),
    (["decode", "--checkpoint", "{c}/box_order.pt", "--data", "synthetic:3", "--out", "o"], "minimum exceeds"),
    (["decode", "--checkpoint", "{c}/nan_weight.pt", "--data", "synthetic:3", "--out", "o"],
     "has NaN or infinite weights"),
    (["decode", "--checkpoint", "{c}/pickled.pt", "--data", "synthetic:3", "--out", "o"],
     "holds a Python object (argparse.Namespace) beyond tensors and numbers: loading it would run code"),
    (["evaluate", "--checkpoint", "{c}/nan_weight.pt", "--data", "synthetic:3"], "has NaN or infinite weights"),
    # a 50 MB one-line CIF: one short line, not 50 MB of pymatgen's warning
    (["decode", "--checkpoint", "synthetic", "--data", "{c}/big.cif", "--out", "o"], "big.cif: could not parse CIF"),
]

if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
    CASES.append((["decode", "--checkpoint", "synthetic", "--data", "synthetic:3", "--out", "o", "--device", "mps"],
                  "torch sees no Apple GPU (MPS)"))


if not __import__("torch").cuda.is_available():  # a device this machine lacks: one line, not a torch error
    CASES += [
        (["decode", "--checkpoint", "synthetic", "--data", "synthetic:2", "--out", "o", "--device", "cuda"],
         "torch sees no CUDA GPU"),
        ([*TRAIN[:-2], "--train", "synthetic:30", "--out", "o", "--device", "cuda:0"], "torch sees no CUDA GPU"),
    ]


def _hashes(folder):
    """Every file under `folder` (by path relative to it) and its SHA-256; symlinks by their target."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _cli(args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "nesf_viz.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:1] + [m[:30]]) for a, m in CASES])
def test_bad_input_is_one_named_line_and_leaves_inputs_alone(files, crafted, args, message):
    before, before_crafted = _hashes(files), _hashes(crafted)
    argv = [a.format(d=files, c=crafted) for a in args]
    r = _cli(argv, files)
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stderr
    assert len(r.stderr) < 10_000, r.stderr[:2000]  # no input quoted back at length
    after = _hashes(files)
    assert {k: v for k, v in after.items() if k in before} == before  # no input changed
    # nothing written anywhere but the (then empty) output folder
    assert not [k for k in after if k not in before], sorted(set(after) - set(before))
    assert _hashes(crafted) == before_crafted


def test_skip_bad_decodes_the_rest_and_names_what_it_skipped(files):
    before = _hashes(files)
    r = subprocess.run([sys.executable, "-m", "nesf_viz.cli", "decode", "--checkpoint", "synthetic", "--data",
                        str(files / "mixed.csv"), "--out", "dec", "--decode", "fast", "--skip-bad", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, cwd=files)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped 1 of 3 crystals" in r.stderr and "U in 'uranium-1'" in r.stderr
    assert sorted(p.name for p in (files / "dec").glob("*.cif")) == ["kcl.cif", "nacl.cif"]
    assert {k: v for k, v in _hashes(files).items() if k in before} == before


# ----------------------------------------------------------------------------- output paths from ids

HOSTILE_IDS = ["../../escape", "{abs}/escaped", "a/b", "nul\x00byte", "x" * 300, "dup", "dup", "CON", ".hidden",
               "new\nline", "Dup"]


def _csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "cif"])
        w.writerows(rows)


def _summary(folder):
    with (folder / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_ids_name_files_inside_out_only_unique_and_listed(tmp_path):
    # ids that are paths, absolute paths, NUL bytes, 300 characters, duplicates (also by case)
    (tmp_path / "abs").mkdir()
    ids = [i.format(abs=tmp_path / "abs") for i in HOSTILE_IDS]
    _csv(tmp_path / "ids.csv", [(i, _cif("Na" if k % 2 else "K")) for k, i in enumerate(ids)])
    before = _hashes(tmp_path)
    r = _cli(["decode", "--checkpoint", "synthetic", "--data", "ids.csv", "--out", "work/out", "--decode", "fast",
              "--device", "cpu"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    after = _hashes(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    new = sorted(set(after) - set(before))
    assert all(k.startswith("work/out/") and k.count("/") == 2 for k in new), new  # nothing elsewhere
    rows = _summary(tmp_path / "work" / "out")
    assert [row["id"] for row in rows] == ids  # every row, in order, with its id as given
    files = [row["cif_file"] for row in rows]
    assert len(set(f.casefold() for f in files)) == len(ids)  # one file per crystal, even for "dup", "dup", "Dup"
    assert sorted(new) == sorted(["work/out/summary.csv", *(f"work/out/{f}" for f in files)])
    assert files[5:7] == ["dup.cif", "dup-2.cif"] and files[10] == "Dup-3.cif"
    assert files[7] == "_CON.cif" and files[8] == "hidden.cif" and "\x00" not in "".join(files)
    assert all(len(f.encode()) <= 130 for f in files)


def _random_id(rng):
    pieces = ["/", "\\", ".", "..", "\x00", "\n", "\x1b", "\t", " ", "é", "😀", "\u202e", ":", "*", "?", "CON", "nul",
              "a", "B", "-", "~", "\ud800", "%2e%2e", "/etc/passwd", "C:\\x", "x" * 50, "Ω" * 40]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))


def test_random_ids_never_write_outside_the_output_folder(tmp_path):
    """Property (seeded generator): whatever the ids, every file lands in the folder, one per id,
    named safely, and summary.csv says which file holds which id."""
    from nesf_viz.outputs import MAX_STEM_BYTES, DecodedFolder, safe_stem

    rng = random.Random(23)
    (tmp_path / "decoy.txt").write_text("outside")
    out = tmp_path / "deep" / "out"
    ids = [_random_id(rng) for _ in range(400)]
    with DecodedFolder(out) as folder:
        for start in range(0, len(ids), 64):  # batch by batch, as decode streams them
            folder.add([(cid, None if k % 17 == 0 else f"content {k}\n", {"id": cid})
                        for k, cid in enumerate(ids[start:start + 64], start)])
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if not p.is_dir())
    names = sorted(os.listdir(out))
    assert everything == sorted(["decoy.txt", *(f"deep/out/{n}" for n in names)])
    assert (tmp_path / "decoy.txt").read_text() == "outside"
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # every id, in order; one that cannot be UTF-8 (a lone surrogate) is written with a visible escape
    assert [row["id"] for row in rows] == [i.encode("utf-8", "backslashreplace").decode() for i in ids]
    files = [row["cif_file"] for row in rows]
    written = [f for f in files if f]
    assert sorted(written + ["summary.csv"]) == names  # exactly the files listed, nothing else
    assert len({f.casefold() for f in written}) == len(written)
    for k, f in enumerate(files):
        assert (f == "") == (k % 17 == 0)
        if f:
            assert (out / f).read_text() == f"content {k}\n"  # the file holds the crystal its row names
            assert not f.startswith(".") and ".." not in f and "/" not in f and "\\" not in f
            assert all(ch.isprintable() for ch in f), repr(f)
            assert len(f.encode()) <= MAX_STEM_BYTES + 12
    for i in ids + [_random_id(rng) for _ in range(2000)]:
        stem = safe_stem(i, "fallback")
        assert stem and len(stem.encode()) <= MAX_STEM_BYTES and Path(stem).name == stem
        assert not stem.startswith((".", " ")) and ".." not in stem and all(ch.isprintable() for ch in stem)


def test_a_symlink_in_out_is_replaced_never_followed(tmp_path):
    from nesf_viz.outputs import DecodedFolder

    other = tmp_path / "other"
    with DecodedFolder(other) as f:
        f.add([("nacl", "other's nacl\n", {"id": "nacl"})])
    before = _hashes(other)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").symlink_to(other / "summary.csv")  # a summary that is a link to another's
    (out / "nacl.cif").symlink_to(other / "nacl.cif")
    with DecodedFolder(out, append=True) as f:
        f.add([("nacl", "new nacl\n", {"id": "nacl"})])
    assert _hashes(other) == before  # the link's target is untouched
    assert not (out / "summary.csv").is_symlink() and (out / "nacl-2.cif").read_text() == "new nacl\n"
    assert [r["cif_file"] for r in _summary(out)] == ["nacl.cif", "nacl-2.cif"]
    with DecodedFolder(out, overwrite=True) as f:  # removes the links it listed, not what they point at
        f.add([("kcl", "kcl\n", {"id": "kcl"})])
    assert sorted(os.listdir(out)) == ["kcl.cif", "summary.csv"] and _hashes(other) == before


def test_one_output_folder_one_decode_unless_asked(tmp_path, capsys):
    from nesf_viz.assets import checkpoint_path
    from nesf_viz.data import DataSource
    from nesf_viz.decode import DecodeConfig
    from nesf_viz.errors import OutputError
    from nesf_viz.evaluate import run_decode

    out = tmp_path / "out"

    def decode(data, limit, **kw):
        return run_decode(checkpoint_path("synthetic"), DataSource(data, limit=limit), out, device="cpu",
                          decode_config=DecodeConfig.fast(), **kw)

    def listed():
        rows = _summary(out)
        assert sorted(r["cif_file"] for r in rows if r["cif_file"]) == sorted(p.name for p in out.glob("*.cif"))
        return [r["id"] for r in rows]

    decode("synthetic:30", limit=2)
    first = listed()
    with pytest.raises(OutputError, match="already holds decoded results"):
        decode("synthetic:30", limit=3)
    assert listed() == first
    decode("synthetic:40", limit=1, append=True)  # rows added, every CIF listed, none twice
    assert len(listed()) == 3 and listed()[:2] == first
    decode("synthetic:50", limit=1, overwrite=True)  # what the earlier runs wrote is gone
    assert len(listed()) == 1 and len(list(out.glob("*.cif"))) == 1 and not list(out.glob(".*"))


# ----------------------------------------------------------------------------- readers


def test_every_data_block_of_a_cif_is_a_crystal(files):
    from nesf_viz.data import load_crystals, read_csv
    from nesf_viz.errors import MalformedCIFError

    crystals = load_crystals(files / "two.cif", conventional=False)
    assert [c.id for c in crystals] == ["two:NaCl", "two:KCl_second"]
    assert [sorted(set(c.atomic_numbers.tolist())) for c in crystals] == [[11, 17], [17, 19]]
    _csv(files / "two_in_a_row.csv", [("both", (files / "two.cif").read_text())])
    with pytest.raises(MalformedCIFError, match="holds 2 structures .data blocks"):
        read_csv(files / "two_in_a_row.csv")
    r = _cli(["decode", "--checkpoint", "synthetic", "--data", "two.cif", "--out", "out2", "--decode", "fast",
              "--device", "cpu"], files)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(_summary(files / "out2")) == 2


def test_a_csv_with_a_byte_order_mark_keeps_its_ids(tmp_path):
    from nesf_viz.data import read_csv

    path = tmp_path / "bom.csv"
    path.write_text("material_id,cif\n" + f'nacl,"{_cif("Na")}"\n', encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    (c,) = read_csv(path)
    assert c.id == "nacl" and "material_id" in c.properties


def test_ids_and_structures_must_pair_up(nacl):
    from nesf_viz.data import read_structures
    from nesf_viz.errors import DatasetError

    with pytest.raises(DatasetError, match="2 structures but 1 ids"):
        read_structures([nacl, nacl], ids=["only-one"])
    assert [c.id for c in read_structures([nacl, nacl], ids=["a", "b"])] == ["a", "b"]
    from nesf_viz.data import CrystalBatch

    with pytest.raises(DatasetError, match="2 structures but 3 ids"):
        CrystalBatch.from_structures([nacl, nacl], ids=["a", "b", "c"])


# ----------------------------------------------------------------------------- training that goes wrong


def test_overwrite_removes_the_old_runs_checkpoints(synthetic_small, tmp_path):
    import threading

    from nesf_viz.train import train
    from nesf_viz.train_config import TrainConfig

    tr, va = synthetic_small["train"][:8], synthetic_small["val"][:4]
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu")
    train(tr, va, tmp_path, cfg, progress=False)
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    stop = threading.Event()
    stop.set()  # the new run ends before its first epoch: nothing of the old run may be taken for it
    res = train(tr, va, tmp_path, cfg, progress=False, overwrite=True, stop=stop)
    assert res.last_checkpoint is None and res.best_checkpoint is None
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "last.pt").exists()


def test_a_diverging_training_stops_at_once_and_keeps_the_last_good_checkpoint(synthetic_small, tmp_path,
                                                                               monkeypatch):
    from nesf_viz.checkpoints import load_checkpoint
    from nesf_viz.errors import NonFiniteLossError
    from nesf_viz.train import train
    from nesf_viz.train_config import TrainConfig

    T = sys.modules["nesf_viz.train"]  # the package exports a function of the same name
    tr, va = synthetic_small["train"][:16], synthetic_small["val"][:4]
    train(tr, va, tmp_path, TrainConfig(epochs=1, batch_size=8, device="cpu"), progress=False)
    good = (tmp_path / "last.pt").read_bytes()
    monkeypatch.setattr(T, "learning_rate_at", lambda config, epoch: 1e30)
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf).*last.pt keeps epoch 1, the last good one"):
        train(tr, va, tmp_path, TrainConfig(epochs=3, batch_size=8, device="cpu"), progress=False, resume=True)
    assert (tmp_path / "last.pt").read_bytes() == good and load_checkpoint(tmp_path).epoch == 1


def test_non_finite_numbers_in_a_train_config_are_config_errors(synthetic_small):
    from nesf_viz.errors import ConfigError
    from nesf_viz.train import train
    from nesf_viz.train_config import TrainConfig

    tr, va = synthetic_small["train"][:8], synthetic_small["val"][:4]
    for bad in ({"learning_rate": float("inf")}, {"warmup_epochs": float("inf")},
                {"species_loss_weight": float("nan")}, {"seed": -1}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))} must be"):
            train(tr, va, None, TrainConfig(epochs=1, batch_size=8, device="cpu", **bad), progress=False)
