"""requests sessions that speak mutual TLS with the deployment CA (``client.mtls``)."""

from dmr_appliance.client.mtls import session as mtls_session

__all__ = ["mtls_session"]
