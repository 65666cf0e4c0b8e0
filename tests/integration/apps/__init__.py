"""ASGI applications served by the integration tests (imported by the server process only)."""
