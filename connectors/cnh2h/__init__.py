"""The Chinese direct-connect (银企直联) dialect: JSON with Chinese keys, detached signatures."""

from connectors.cnh2h.connector import H2hConnector, parse_h2h_statement

__all__ = ["H2hConnector", "parse_h2h_statement"]
