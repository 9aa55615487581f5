"""Subcommands of the ``tfmc`` command line, one module each."""
