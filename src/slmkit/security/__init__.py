"""API keys and rate limits: what the server needs to be safe on a network."""
