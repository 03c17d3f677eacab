"""Helpers for tests and benchmarks: random integer NetX networks (:mod:`.netgen`).

Outside the core and the stages; imports only the core.
"""
