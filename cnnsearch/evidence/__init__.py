"""Evidence: claims from measurements. ``confirm`` retrains candidates over paired seeds, ``verdict``
holds the statistics, ``importance`` ranks choices from the search's trials, ``estimate`` plans time.

May import: :mod:`cnnsearch.search` and everything below it.
"""
