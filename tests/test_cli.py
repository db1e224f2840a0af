import numpy as np
import pytest

from skydiff.cli import main
from skydiff.io import read_exposure

from .conftest import data_path


def test_demo_writes_a_readable_survey(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "-o",
                str(out),
                "--visits",
                "2",
                "--size",
                "128",
                "--seed",
                "3",
                "--simulate-only",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Simulated 2 visits x 4 detectors" in printed
    calexps = sorted(out.glob("calexp_*.fits"))
    assert len(calexps) == 8 and len(list(out.glob("truth_v*_d*.ecsv"))) == 8
    exposure = read_exposure(calexps[0])
    assert exposure.psf is not None and exposure.photo_calib is not None
    assert exposure.image.shape == (128, 128) and np.isfinite(exposure.image).all()
    # a second run refuses to overwrite, with a CLI hint, unless asked to
    assert main(["demo", "-o", str(out), "--visits", "2", "--size", "128", "--simulate-only"]) == 1
    assert "use --overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "demo",
                "-o",
                str(out),
                "--visits",
                "2",
                "--size",
                "128",
                "--overwrite",
                "--simulate-only",
            ]
        )
        == 0
    )


def test_info_describes_lsst_and_plain_files(capsys):
    hsc = data_path("lsst_afw_hsc", "HSC-0908120-056-small.fits")
    assert main(["info", str(hsc)]) == 0
    printed = capsys.readouterr().out
    assert "x0=100 y0=100 width=200 height=200" in printed and "DETECTED" in printed


def test_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.fits"
    assert main(["info", str(missing)]) == 1
    assert f"{missing}: file does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["no-such-command"])
