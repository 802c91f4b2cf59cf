"""What crosses the wire between the tiers, defined once below client, relay and home.

``problem`` reads an RFC 9457 problem document whoever wrote it (home, a relay, nginx);
``outcome`` is a recipient's outcome and a message's roll-up, the relay's answer and the
sender's retry decision alike; ``retry`` the one backoff policy; ``failover`` several base
URLs of one service. Pure: no Falcon, no server code; imported by client/, relay/, home/
and the CLI, never the other way round.
"""
