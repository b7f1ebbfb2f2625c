"""auxsel: reproducible auxiliary-task selection with alpha-Variable Importance Learning."""

__version__ = "0.1.0"
