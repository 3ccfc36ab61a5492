"""Ground: what every layer stands on. Data loading and splitting, provenance (sha256 of the data),
interrupt handling, progress display, trial descriptions in words, the error types, and the one lazy
TensorFlow/Keras import (``_tf``).

May import: the standard library and third-party packages only (never another cnnsearch layer).
"""
