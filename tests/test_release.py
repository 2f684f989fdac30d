"""`python evaluate.py report --release`: the folder, its figures against the leaderboard, the plots."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evaluate import app
from harness.leaderboard import Leaderboard
from harness.plots import pareto_front, training_curves

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Tables (rows of cell texts), image sources and every link-like attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(values.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def board(tiny_beir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "board.sqlite"
    args = ["--dataset", str(tiny_beir), "--model", "bm25-ko", "--model", "bm25-plain", "--top-k", "100",
            "--output", str(tmp_path / "eval"), "--leaderboard", str(path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return path


def test_the_release_folder_holds_the_leaderboards_figures(board: Path, tmp_path: Path) -> None:
    out = tmp_path / "release"
    result = runner.invoke(app, ["report", "--release", "v1", "--leaderboard", str(board), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL_CARD.md", "report.html", "report.md", "results.json", "scores.png", "tradeoff.png",
    ]  # fmt: skip
    with Leaderboard(board, readonly=True) as lb:
        recorded = {r["model"]: r["metrics"]["ndcg@10"] for r in lb.rows()}
    doc = json.loads((out / "results.json").read_text())
    assert doc["baseline"] == "bm25-ko" and doc["release"] == "v1"
    assert doc["means"] == recorded  # one dataset: the mean is the score
    assert doc["best"] == max(recorded, key=recorded.__getitem__)
    (comparison,) = doc["comparisons"]
    assert comparison["candidate"] == "bm25-plain" and comparison["delta"] == pytest.approx(
        recorded["bm25-plain"] - recorded["bm25-ko"]
    )
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert len(page.tables) == 3  # leaderboard, the dataset, efficiency
    leaderboard = page.tables[0]
    assert leaderboard[0][:3] == ["rank", "model", "mean ndcg@10"]
    assert {(row[1], row[2]) for row in leaderboard[1:]} == {(m, f"{v:.4f}") for m, v in recorded.items()}
    dataset = page.tables[1]
    plain = next(row for row in dataset if row[0] == "bm25-plain")
    assert plain[2] == f"{comparison['delta']:+.4f}"
    assert plain[3] == f"[{comparison['ci_low']:+.4f}, {comparison['ci_high']:+.4f}]"
    assert plain[6] == f"{comparison['wins']}/{comparison['ties']}/{comparison['losses']}"
    assert len(page.images) == 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert not [link for link in page.links if re.match(r"(https?:)?//", link)]  # nothing outside the file
    md = (out / "report.md").read_text()
    assert f"| bm25-plain | {comparison['candidate_score']:.4f}" in md and "![" in md
    assert "# " + doc["best"] in (out / "MODEL_CARD.md").read_text()


def test_release_errors_name_what_is_wrong(board: Path, tmp_path: Path) -> None:
    base = ["report", "--release", "v1", "--leaderboard", str(board), "--out", str(tmp_path / "r")]
    cases = [
        (["--model", "nope"], "no evaluation of nope"),
        (["--dataset", "gimp-ko"], "holds no evaluation of split test on gimp-ko"),
        (["--metric", "map@7"], "metric 'map@7' is not recorded for bm25-ko, bm25-plain"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
        assert not (tmp_path / "r").exists()
    empty = [
        "report",
        "--release",
        "v1",
        "--leaderboard",
        str(tmp_path / "none.sqlite"),
        "--out",
        str(tmp_path / "r"),
    ]
    assert "no leaderboard at" in runner.invoke(app, empty).output
    assert runner.invoke(app, base).exit_code == 0
    again = runner.invoke(app, base)
    assert again.exit_code == 2 and "exists" in again.output
    assert runner.invoke(app, [*base, "--force"]).exit_code == 0


def test_pareto_front_by_hand() -> None:
    # (cost, effectiveness): b dominates a (cheaper, better); c costs more but is best; d is dominated by c
    points = [(2.0, 0.30), (1.0, 0.32), (3.0, 0.40), (4.0, 0.35), (1.0, 0.32)]
    assert pareto_front(points) == [1, 4, 2]  # equal points dominate neither
    assert pareto_front([]) == []


def test_training_curves_draw_the_trainers_files() -> None:
    logged = [{"step": s, "loss": 5.0 / s, "infonce": 4.0 / s, "flops": 1.0} for s in (5, 10, 15)]
    evaluated = [{"step": 0, "kind": "step", "checkpoint": "step-0000000", "ndcg@10": 0.3},
                 {"step": 15, "kind": "final", "checkpoint": "step-0000015", "ndcg@10": 0.35}]  # fmt: skip
    assert training_curves(logged, evaluated, "ndcg@10").startswith(PNG)
    assert training_curves([], [], "ndcg@10").startswith(PNG)  # nothing logged: empty axes, no crash
