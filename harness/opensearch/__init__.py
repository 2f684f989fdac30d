"""Where the workbench meets OpenSearch.

    export      a release directory: checkpoint files, model card, ML Commons zips and register bodies
    ml_commons  the ML Commons requests (register, deploy, predict, pipelines, neural_sparse) and a runner
    client      connection settings from flags/env, retries with backoff
    engine      mappings, feature keys, Lucene's rounding, bulk ingest, queries
    parity      the engine against in-process scores

The engine retrievers themselves are a retriever family: `harness.retrievers.opensearch`.
"""

from __future__ import annotations

from harness.opensearch.export import ExportResult, export_release

__all__ = ["ExportResult", "export_release"]
