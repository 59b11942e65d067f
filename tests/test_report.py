"""The main job (`make demo`) end to end, at a tiny size."""

from nesf_viz.evaluate import METRIC_KEYS
from nesf_viz.report import run_demo


def test_demo_trains_decodes_and_writes_standalone_report(tmp_path, capsys):
    metrics = run_demo(tmp_path, minutes=0.05, n_total=30, device="cpu")
    assert tuple(metrics) == METRIC_KEYS and metrics["n_structures"] == 3
    html = (tmp_path / "report.html").read_text()
    assert "Paper metrics on the test split" in html and "plotly" in html.lower()
    assert (tmp_path / "checkpoint" / "best.pt").is_file()
    assert "make lab" in capsys.readouterr().out
