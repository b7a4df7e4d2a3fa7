"""The ``bas`` command line: ``main`` (commands, error handling), ``compose`` (composing and pack
commands), ``argtypes`` (option value checks)."""
