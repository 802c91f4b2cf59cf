"""End-to-end proof between participants, over relays that are not trusted with it.

``signature``: a sender signs each message with its participant key; ``receipt``: a
recipient answers a verified message with a receipt signed by its endpoint's key. Both
are JWS (ES256) carrying their certificate (``x5c``), so either side needs only the
deployment CA and its CRL (``trust``), never home or a relay. ``canonical`` is the RFC
8785 form a signature covers. Pure: cryptography and PyJWT, no Falcon, no sockets.
"""
