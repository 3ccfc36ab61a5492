"""Search: the space file and its points, size limits, the study's lifecycle, one trial (``objective``),
many trials over worker processes (``runner``), and reading a study back (``browse``, ``exchange``).

May import: :mod:`cnnsearch.records`, :mod:`cnnsearch.model`, :mod:`cnnsearch.ground`.
"""
