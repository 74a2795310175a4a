"""ISO 20022 message formats. ``xsd/`` holds the official schemas (byte-identical copies)."""

from pathlib import Path

XSD_DIR = Path(__file__).parent / "xsd"

__all__ = ["XSD_DIR"]
