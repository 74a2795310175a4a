"""Bank connectors, message formats, transport, and the sandbox bank."""
