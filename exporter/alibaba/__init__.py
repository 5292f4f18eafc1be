"""The API side: wire facts, signing, the ListAsynJobs client, request pacing, credentials.

Never imports prometheus_client; knows nothing of metrics or HTTP serving.
"""
