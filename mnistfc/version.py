"""The package version: one definition, at the bottom of the import graph, so provenance and
the CLI can name it without importing the package root (which imports the whole API)."""

__version__ = "0.1.0"
