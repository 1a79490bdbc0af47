"""Monitoring of a shopserve service: metrics, request ids and JSON logs, drift against each
version's evaluation data, feedback quality (CTR, NDCG), the live dashboard and its status.

Serving imports ``shopserve.monitor.requests`` on its request path, so this package imports
nothing at import time; import the submodules you use.
"""
