"""Serving engines over HTTP: the ``specdec_engine`` tests (need a server) and their machinery (run by default)."""
