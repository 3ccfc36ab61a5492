"""``python -m cnnsearch.cli``: the same command as ``cnnsearch``."""

from cnnsearch.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
