"""Prefect flows: what treasury operators run, schedule and watch in the Prefect UI."""
