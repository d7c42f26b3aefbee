"""ROLIE feed. Pure parts: ``layout`` (collections and URLs), ``access`` (rights), ``atom``, ``html`` and
``opensearch`` (rendering), ``settings`` (the config section), ``auth`` (credential hashes). The aiohttp
shell: ``app`` (routes and reads), ``write`` (AtomPub), ``http`` (authentication, negotiation, conditional
responses) and ``tls``; import them explicitly, the package itself pulls in no HTTP code."""
