"""The end-to-end demo as an acceptance test: the whole pipeline on a simulated survey."""

import json

from skydiff.cli import main


def test_demo_recovers_transients_with_few_false_detections(tmp_path, capsys):
    """Issue 8's acceptance figures on the default demo survey (6 visits x 4 detectors).

    >= 90% of the transient epochs with expected S/N >= 10 are recovered, and
    fewer than one unflagged DIA source per detector-visit matches no
    injected transient or variable star (the simulated survey has no other
    variability, so every such source is a subtraction artefact).
    """
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "demo_summary.json").read_text())
    score = report["score"]
    # the best-seeing half of the visits are templates, the rest are differenced
    assert len(report["template_visits"]) == 3 and len(report["science_visits"]) == 3
    assert score["n_differences"] == 12
    assert all(step["failed"] == 0 for step in report["steps"].values())
    assert report["steps"]["sky_frame"]["done"] == 4  # one sky frame per detector
    assert report["steps"]["sky_correction"]["done"] == 6  # one per visit
    bright = [row for row in score["recovery"] if row["snr_min"] >= 10 and row["n"]]
    # enough bright epochs for the fraction to mean something
    assert sum(row["n"] for row in bright) >= 5
    assert score["recovered_fraction_snr_above_10"] >= 0.9
    assert score["false_per_difference"] < 1.0
    assert "false detections per detector per visit" in printed
    assert (out / "figures" / "recovery_vs_snr.png").stat().st_size > 0
