"""The package's version: one home, read by the package's face and by what stores it on a study."""

__version__ = "0.1.0"
