"""SPLADE-doc model code (document encoder, IDF query side, losses, trainer).

Pure model code: it never imports `harness` or a command line.
"""
