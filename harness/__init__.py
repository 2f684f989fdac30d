"""Evaluation harness of the Korean-English SPLADE-doc workbench."""
