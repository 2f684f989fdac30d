"""Where the workbench meets OpenSearch: release export and ML Commons packaging (`export`)."""

from __future__ import annotations

from harness.opensearch.export import ExportResult, export_release

__all__ = ["ExportResult", "export_release"]
