"""The version of dicommove."""

__version__ = "0.1.0"
