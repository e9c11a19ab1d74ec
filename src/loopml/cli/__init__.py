"""The ``loopml`` command line; the entry point is :func:`loopml.cli.main.main`."""
