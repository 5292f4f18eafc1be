"""Benchmarks of API-call economy and serving cost against the simulator (`make bench`)."""
