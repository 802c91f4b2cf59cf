"""What participants' applications use: ``Sender`` (retries, failover, failure reports),
``RetryPolicy``, ``SendResult``, ``SeenIds`` (deduplication at recipients), ``HomeClient``
(home's API; defined in ``wire.home``, the one home client of the sender, the CLI and the
relay's sync agent)."""

from dmr_appliance.client.dedup import SeenIds
from dmr_appliance.client.result import SendResult
from dmr_appliance.client.sender import Sender
from dmr_appliance.wire.home import HomeClient
from dmr_appliance.wire.retry import RetryPolicy

__all__ = ["HomeClient", "RetryPolicy", "SeenIds", "SendResult", "Sender"]
