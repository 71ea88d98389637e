"""The package's version, alone, so that subpackages import it without the package."""

__version__ = "0.1.0"
