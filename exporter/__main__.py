"""`python -m exporter` runs the same entry point as the console script."""

from exporter.cli import run

run()
