"""requests sessions that speak mutual TLS with the deployment CA (``wire.mtls``)."""

from dmr_appliance.wire.mtls import session as mtls_session

__all__ = ["mtls_session"]
