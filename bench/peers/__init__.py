"""Benchmarks of shopserve against the serving systems its users would otherwise pick.

``bench/run-peers`` is the entry point; see ``bench/README.md``.
"""
