"""Report: showing a study. ``data`` computes what the page shows, ``page`` renders one self-contained
HTML file, ``dashboard`` serves optuna-dashboard.

May import: :mod:`cnnsearch.evidence` and everything below it.
"""
