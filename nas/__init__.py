"""nas: neural architecture search for efficient image classifiers."""

__version__ = "0.1.0"
