"""Local tooling: what runs the whole deployment on one machine for ``dmr up``, ``dmr demo``
and the tests, never a service in production.

``processes`` (the one supervisor of child process groups, nginx's master among them),
``stack`` (home, relays, gates, router and recipient on loopback), ``demo`` (the scripted
run and its tally), ``recipient`` (the demo recipient). It may import every shared module,
``client/`` and ``serving``; nothing outside ``cli/`` imports it.
"""
