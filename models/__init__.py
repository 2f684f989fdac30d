"""SPLADE-doc model code: the document encoder (`encoder`), the IDF query side (`idf`), the
checkpoint folder and its only reader and writer (`checkpoint`, with `st_format` for
sentence-transformers' files), the training configuration (`config`), the loss stack (`losses`),
the trainer (`trainer`) and the offline XLM-R tokenizer (`xlmr_tokenizer`).

Pure model code: it imports `common` only, never `harness` or a command line.
"""
