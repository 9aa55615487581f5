"""Data sources, one module each; the named ones are registered in ``tfmc.data.specs.NAMED``."""
