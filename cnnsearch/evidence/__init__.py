"""Evidence: claims from measurements. ``confirm`` retrains candidates over paired seeds (``store`` keeps
runs, predictions and declared families; ``summary`` replays a confirmation's looks; ``words`` says it),
``verdict`` holds the statistics (seeds + test images, Holm, alpha spending, TOST), ``published`` compares
with a published single-run figure and checks rank agreement, ``importance`` ranks choices from the
search's trials, ``estimate`` plans time.

May import: :mod:`cnnsearch.search` and everything below it.
"""
