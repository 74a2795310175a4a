"""The sandbox bank: a real host-to-host bank server for demos, tests and integrators.

It keeps its own double-entry ledger in its own database, speaks ISO 20022 and a Chinese
direct-connect dialect over mutual TLS, signs what it sends, and injects faults on demand.
It shares no code path with Yinqi's store: to Yinqi it is just another bank.
"""

from connectors.sandbox.bank import Instruction, Outcome, Sandbox
from connectors.sandbox.clock import Calendar, FakeClock, SystemClock
from connectors.sandbox.runner import open_sandbox, serve
from connectors.sandbox.settings import SandboxConfig, load_sandbox_config

__all__ = [
    "Calendar",
    "FakeClock",
    "Instruction",
    "Outcome",
    "Sandbox",
    "SandboxConfig",
    "SystemClock",
    "load_sandbox_config",
    "open_sandbox",
    "serve",
]
