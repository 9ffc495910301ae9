"""Node-to-node API: the server side (routes) and the client side (aiohttp)."""
