"""Model: one CNN's life. ``arch`` (ArchSpec, the one layer plan, the reference's figures), ``train``
(fit and evaluate), ``forward`` + ``im2col`` (NumPy inference from kept weights), ``baseline`` (the
reference run), ``viz`` (filters and feature maps: compute, then draw).

May import: :mod:`cnnsearch.ground`.
"""
