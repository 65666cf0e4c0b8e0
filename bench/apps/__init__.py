"""The benchmark apps: one module per scenario, served unchanged by every server."""
