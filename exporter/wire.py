"""Wire facts of ALB's ListAsynJobs (API version 2020-06-16), defined once.

The client, the config validation, the job model and the simulator all read these; nothing
here does I/O or imports anything, so every layer may depend on it.
"""

from __future__ import annotations

ACTION = "ListAsynJobs"
API_VERSION = "2020-06-16"

# Job statuses as the API spells them.
PROCESSING = "Processing"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINAL = (SUCCEEDED, FAILED)

# The ResourceType values ListAsynJobs documents.
RESOURCE_TYPES = ("loadbalancer", "listener", "rule", "acl", "securitypolicy", "servergroup")

MAX_PAGE_SIZE = 100  # the API's documented MaxResults upper bound
DEFAULT_PAGE_SIZE = 20  # MaxResults when a request does not say
# JobIds.N / ResourceIds.N per call: the API's limit is unconfirmed, 20 is what is safe.
MAX_IDS_PER_CALL = 20

EXPIRED_TOKEN_CODE = "InvalidSecurityToken.Expired"
