"""`python -m harness.prepare <step>`: the data pipeline's command line, one sub-command per step.

Every step streams its input, writes a folder under a temporary name that is renamed when
complete, with a `manifest.json` (input checksums, parameters, counts, problems skipped with their
position), and does nothing when run again on the same inputs with the same parameters.
"""

from __future__ import annotations

import typer

from harness.prepare import bilingual, corpora, namuwiki, negatives, pairs, synonyms, temporal_idf, wikipedia

__all__ = ["app", "main"]

app = typer.Typer(
    help=__doc__.splitlines()[0] if __doc__ else None,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for step in (wikipedia, namuwiki, pairs, bilingual, corpora, synonyms, negatives, temporal_idf):
    step.register(app)


def main() -> None:
    app()
