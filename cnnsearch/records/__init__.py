"""Records: where studies live. Storage URLs, opening a storage without creating it, the artifact
store for kept weights, masking credentials, and the one module of third-party private names.

May import: :mod:`cnnsearch.ground`.
"""
