"""gunicorn entry point: ``dmr_appliance.home.wsgi:app``."""

from dmr_appliance.home.app import get_app

app = get_app()
