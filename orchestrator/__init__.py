"""Orchestrator: the ``layerlab`` CLI and (later) the conductor that turns specs into runs.

In: command-line arguments and experiment specs. Out: calls into every stage, and exit codes
a CI job can use (0 ok, 1 failure, 2 bad input).
"""
