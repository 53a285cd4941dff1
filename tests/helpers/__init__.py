"""Helpers shared by the tests (import them as ``helpers.data``, ``helpers.sweeps``)."""
