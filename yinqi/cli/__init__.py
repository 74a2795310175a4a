"""The ``yinqi`` command."""

from yinqi.cli.app import app, main

__all__ = ["app", "main"]
