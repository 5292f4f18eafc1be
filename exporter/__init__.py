"""Prometheus exporter for Alibaba Cloud ALB asynchronous jobs (ListAsynJobs)."""

__version__ = "0.1.0"

# Where the user documentation lives (the README), linked from the landing page.
DOCS_URL = "https://github.com/alb-jobs-exporter/alb-jobs-exporter#readme"
