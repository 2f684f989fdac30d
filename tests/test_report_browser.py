"""The release report in a real browser: headless Chromium renders report.html from the file alone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evaluate import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian package chromium; .ci/run installs it)"
)
def test_chromium_renders_the_tables_and_images(tiny_beir: Path, tmp_path: Path) -> None:
    import numpy as np
    from matplotlib.image import imread

    board, out = tmp_path / "board.sqlite", tmp_path / "release"
    runner = CliRunner()
    evaluated = runner.invoke(
        app,
        [
            "--dataset",
            str(tiny_beir),
            "--model",
            "bm25-ko",
            "--model",
            "bm25-plain",
            "--output",
            str(tmp_path / "eval"),
            "--leaderboard",
            str(board),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    made = runner.invoke(
        app, ["report", "--release", "browser", "--leaderboard", str(board), "--out", str(out)]
    )
    assert made.exit_code == 0, made.output
    url = (out / "report.html").resolve().as_uri()
    run = [str(CHROMIUM), *FLAGS]
    dom = subprocess.run(
        [*run, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<table>") == 3 and dom.count("<img ") == 2
    assert "bm25-plain" in dom and "data:image/png;base64," in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            *run,
            f"--user-data-dir={tmp_path / 'profile-shot'}",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            url,
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert (
        np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 50
    )  # text, tables, plots: not blank
    shutil.copy(shot, out / "screenshot.png")
