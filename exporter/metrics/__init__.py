"""The exposition store: what /metrics and /probe serve, written when it changes.

exposition (the store and its version), collector (each target's job family lines),
samples (a target's samples per family), text (their exposition text), requests and
self_metrics (the exporter's own families), table (label caps; the metric table itself is
`exporter.families`).
"""
