"""HTTP serving: WSGI routes, landing page, server, exporter-toolkit web config.

Knows nothing of ALB: it is given a registry and callables.
"""
