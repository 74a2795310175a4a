"""Prefect tasks: thin wrappers over plain functions in ``yinqi`` and ``connectors``."""
