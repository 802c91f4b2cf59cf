"""What participants' applications use: ``Sender`` (retries, failover, failure reports),
``RetryPolicy``, ``SendResult``, ``SeenIds`` (deduplication at recipients), ``HomeClient``."""

from dmr_appliance.client.dedup import SeenIds
from dmr_appliance.client.home import HomeClient
from dmr_appliance.client.result import SendResult
from dmr_appliance.client.sender import Sender
from dmr_appliance.wire.retry import RetryPolicy

__all__ = ["HomeClient", "RetryPolicy", "SeenIds", "SendResult", "Sender"]
