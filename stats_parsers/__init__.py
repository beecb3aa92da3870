"""Stats parsers: gem5's outputs as tidy pandas tables.

In: ``stats.txt`` (any version), ``config.ini``/``config.json``, stdout and debug logs, the
events side-file. Out: a long stats table, the machine as configured, a kernel timeline and
the per-kernel cycle table.
"""
