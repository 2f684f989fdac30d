"""How every data-pipeline step runs: into a temporary folder renamed when complete, with a
manifest; a no-op when the inputs, parameters and step version are those of the manifest there.

    def build(run: StepRun) -> None:
        with atomic_write(run.out / "articles.jsonl") as f: ...
        run.count("articles")
        run.problem("malformed page", f"{dump}: byte 1234", "no <title>")

    manifest = run_step(out, "wikipedia", "1", inputs=[dump], params={"workers": 2}, build=build)

The manifest (`manifest.json`) holds the step, its version, each input's name, size and sha256,
the parameters, the counts, every problem counted by kind (the first examples with their
position), the seconds taken and the provenance (versions, git revision). A run killed half-way
leaves only a hidden temporary folder, removed by the next run; a folder with a manifest is
complete by construction.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.files import atomic_dir, sha256_file, write_json
from common.provenance import provenance
from harness.console import console

__all__ = ["MANIFEST", "StepRun", "input_record", "read_manifest", "run_step"]

MANIFEST = "manifest.json"
EXAMPLES_PER_KIND = 20  # problems kept with their position per kind; all are counted


@dataclass
class StepRun:
    """What a step's `build` writes to and reports through."""

    out: Path  # the temporary folder: every output goes in here
    counts: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # step-specific manifest entries

    def count(self, key: str, amount: int = 1) -> None:
        self.counts[key] += amount

    def problem(self, kind: str, where: str, detail: str = "") -> None:
        """Bad input skipped: counted by kind; the first few kept with where it is."""
        self.problems[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_PER_KIND:
            kept.append(f"{where}: {detail}" if detail else where)


def input_record(path: Path) -> dict[str, Any]:
    """{"name", "bytes", "sha256"} of an input file, or of every file of an input folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        records = [input_record(p) | {"name": str(p.relative_to(path))} for p in files]
        return {"name": path.name, "files": records}
    if not path.is_file():
        raise WorkbenchError(f"{path}: no such input file")
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete step output, None where there is none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"{path}: unreadable manifest ({exc}); remove the folder to rebuild") from None


def run_step(
    out: Path,
    step: str,
    version: str,
    inputs: Sequence[Path],
    params: dict[str, Any],
    build: Callable[[StepRun], None],
    force: bool = False,
) -> dict[str, Any]:
    """Run `build` into a temporary folder that becomes `out` with its manifest; skip it where
    `out` already holds the manifest of the same step, version, inputs and parameters (unless
    `force`). Returns the manifest."""
    out = Path(out)
    key = {
        "step": step,
        "version": version,
        "inputs": [input_record(p) for p in inputs],
        "params": json.loads(json.dumps(params, default=str)),
    }
    previous = read_manifest(out)
    if previous is not None and not force and {k: previous.get(k) for k in key} == key:
        console.log(f"{step}: {out} is up to date (same inputs and parameters)")
        return previous
    started = time.perf_counter()
    with atomic_dir(out, replace=True) as tmp:
        run = StepRun(tmp)
        build(run)
        manifest = key | {
            "counts": dict(run.counts),
            "problems": {k: {"count": n, "examples": run.examples[k]} for k, n in run.problems.items()},
            **run.extra,
            "seconds": round(time.perf_counter() - started, 1),
            "provenance": provenance(),
        }
        write_json(tmp / MANIFEST, manifest, indent=1)
    skipped = sum(run.problems.values())
    console.log(
        f"{step}: wrote {out} ("
        + ", ".join(f"{n:,} {k}" for k, n in run.counts.items())
        + (f"; {skipped:,} problems skipped, see {MANIFEST})" if skipped else ")")
    )
    return manifest
