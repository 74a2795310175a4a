"""ISO 20022 message formats. ``xsd/`` holds the official schemas (byte-identical copies)."""

from pathlib import Path

from connectors.iso20022.camt import FormatError, parse_camt
from connectors.iso20022.pain002 import ParsedStatusReports, parse_pain002

XSD_DIR = Path(__file__).parent / "xsd"

__all__ = ["XSD_DIR", "FormatError", "ParsedStatusReports", "parse_camt", "parse_pain002"]
