"""The pure core: the Job model, the per-target store, target refresh and the state file.

Imports neither httpx nor prometheus_client.
"""
