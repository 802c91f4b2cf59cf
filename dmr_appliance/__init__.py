"""dmr-appliance: Distributed Message Rooms, a stateless relay with a central home."""

__version__ = "0.1.0"
