"""Home: participants, signing keys, tokens and cards, the sync document, heartbeats,
failure reports and the status page. ``app.create_app`` wires it; ``wsgi:app`` serves it."""
