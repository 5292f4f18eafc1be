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

# Region ids with an ALB endpoint (alb.<region>.aliyuncs.com): ALB's endpoint table, the
# regions of its "supported regions" page, and the official SDKs' endpoint maps. Only
# `--check-config` reads it, to warn about a typo (cn-hangzou); a region missing here is
# still used as configured, since ALB opens regions faster than a release ships.
REGIONS = (
    "cn-qingdao",
    "cn-beijing",
    "cn-zhangjiakou",
    "cn-huhehaote",
    "cn-wulanchabu",
    "cn-hangzhou",
    "cn-hangzhou-finance",
    "cn-shanghai",
    "cn-shanghai-finance-1",
    "cn-nanjing",
    "cn-fuzhou",
    "cn-shenzhen",
    "cn-shenzhen-finance-1",
    "cn-heyuan",
    "cn-guangzhou",
    "cn-chengdu",
    "cn-zhongwei",
    "cn-hongkong",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-south-1",
    "eu-central-1",
    "eu-west-1",
    "us-east-1",
    "us-west-1",
    "me-central-1",
    "me-east-1",
    "na-south-1",
)
