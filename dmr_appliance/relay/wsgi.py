"""``dmr_appliance.relay.wsgi:app`` for gunicorn; configuration from ``DMR_CONFIG``."""

from dmr_appliance.relay.app import get_app

app = get_app()
