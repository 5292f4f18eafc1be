"""The metric table, the collector built from store snapshots, and the self-metrics."""
