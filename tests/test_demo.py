"""The main job (`make demo`) end to end, at a tiny size."""

import re

from nesf_viz.demo import run_demo
from nesf_viz.metrics import METRIC_KEYS


def test_demo_trains_decodes_both_models_and_says_how_right_each_is(tmp_path, capsys):
    metrics = run_demo(tmp_path, minutes=0.05, n_train=24, n_test=3, device="cpu")
    assert tuple(metrics) == METRIC_KEYS and metrics["n_structures"] == 3
    out = capsys.readouterr().out
    html = (tmp_path / "report.html").read_text()
    assert (tmp_path / "checkpoint" / "best.pt").is_file()
    # both models, side by side, each with how many crystals decoded right
    summaries = re.findall(r"<li><b>(short run \(\d+ epochs\)|shipped \(\d+ epochs\))</b>: (\d)/3 decoded right", html)
    assert [name.split()[0] for name, _ in summaries] == ["short", "shipped"]
    assert int(summaries[1][1]) == 3  # the converged shipped model decodes these held-out crystals right
    # the metrics as a table: a row per metric (label and unit), a column per model, not a text block
    table = re.search(r"<table class='metrics'>(.*?)</table>", html).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert len(rows) == 1 + len(METRIC_KEYS) and "<pre>" not in html
    assert re.findall(r"<th>(.*?)</th>", rows[0])[1:] == [name for name, _ in summaries]
    atom_row = next(r for r in rows if "atom-count error (%)" in r)
    assert re.findall(r"<td class='v'>(.*?)</td>", atom_row)[1] == "0"  # the shipped model: every atom right
    assert "Every crystal" in html and html.count("<tr>") == len(rows) + 1 + 3
    assert "decoded right" in html and "plotly" in html.lower()
    # the decoded crystals are written as CIF files, one per crystal and model
    for model in ("short", "shipped"):
        cifs = sorted((tmp_path / "decoded" / model).glob("*.cif"))
        assert len(cifs) <= 3 and (model == "short" or len(cifs) == 3)
    assert "shipped (" in out and "decoded right" in out and "make lab" in out
