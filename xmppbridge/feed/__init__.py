"""ROLIE feed: ``layout`` (collections and URLs), ``atom`` (pure rendering), ``settings`` and ``app``
(the aiohttp shell; import it explicitly, the package itself pulls in no HTTP code)."""
