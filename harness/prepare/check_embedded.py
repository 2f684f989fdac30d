"""Check a rebuilt copy of the embedded GIMP tasks against the checksums pinned in datasets_cfg/.

    python -m harness.prepare.gimp --out data/prepared/gimp          # rebuild from Debian's packages
    python -m harness.prepare.check_embedded data/prepared/gimp      # byte-identical to what ships?

Exit status 0 when every task matches its pinned sha256, 1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common.files import sha256_tree
from harness.datasets import read_dataset_specs

__all__ = ["check_embedded"]


def check_embedded(root: Path) -> dict[str, tuple[str | None, str | None]]:
    """Task name -> (pinned sha256, sha256 of `root/<task>` or None when absent)."""
    results = {}
    for spec in read_dataset_specs().values():
        if spec.source.type != "embedded" or not str(spec.source.path).startswith("gimp/"):
            continue
        task_dir = root / Path(str(spec.source.path)).name
        results[spec.name] = (spec.sha256, sha256_tree(task_dir) if task_dir.is_dir() else None)
    return results


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.prepare.check_embedded DIR", file=sys.stderr)
        return 2
    results = check_embedded(Path(args[0]))
    table = Table(title=f"Rebuilt GIMP tasks in {args[0]} against datasets_cfg/")
    for col in ("task", "pinned", "rebuilt", "verdict"):
        table.add_column(col)
    for name, (pinned, found) in results.items():
        verdict = "missing" if found is None else ("OK" if found == pinned else "DIFFERS")
        table.add_row(name, (pinned or "-")[:16], (found or "-")[:16], verdict)
    Console().print(table)
    return 0 if results and all(found == pinned for pinned, found in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
