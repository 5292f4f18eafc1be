"""Prometheus exporter for Alibaba Cloud ALB asynchronous jobs (ListAsynJobs)."""

__version__ = "0.1.0"
