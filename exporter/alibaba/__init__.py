"""The API side: signing, the ListAsynJobs client, request pacing, credentials (its wire
facts are `exporter.wire`).

Never imports prometheus_client; knows nothing of metrics or HTTP serving.
"""
