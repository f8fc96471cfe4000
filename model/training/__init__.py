"""Training and data preparation: datasets on disk, the synthetic anchor, the trainers.

``dataset``: the on-disk layout (frames, condition renders, face crops, a JSONL manifest)
shared by ``anchor prepare`` and ``anchor synth-dataset``. ``synth``: the synthetic anchor.
``trainer``: accelerate-based training of the body/face SGDM and the small autoencoder.
Every module imports torch lazily where the CLI needs it (``commands`` never at import).
"""
