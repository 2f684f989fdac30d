"""The base below `harness` and `models`; it imports nothing of the project.

- `errors`: the one error type (`WorkbenchError`);
- `files`: JSONL/TSV/qrels readers that name the file and line, checksums, atomic writes;
- `config`: YAML files validated by pydantic models, one error formatter;
- `provenance`: library versions and the git revision;
- `paths`: where downloads, indexes and caches live.
"""
