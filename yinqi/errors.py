"""Yinqi's one error tree.

Every error carries a message an operator can act on: what is wrong, where, and what to do.
``str(error)`` is that one line; the CLI prints it and nothing else.

    YinqiError
     ├── InvalidValue (ValueError)      a value from outside failed its own checks
     │    ├── MoneyError
     │    │    ├── CurrencyError        unknown currency, or two currencies mixed
     │    │    └── PrecisionError       more decimals than the currency has
     │    └── IdentifierError           account number, CNAPS code, IBAN, BIC, credit code
     ├── ConfigError                    a setting or config file is wrong (file, key, what)
     ├── IllegalTransition              the payment state machine refused a move
     ├── StoreError                     the database refused or is not ready
     │    ├── SchemaOutOfDate           migrations not applied
     │    └── ConcurrencyConflict       another worker changed the row first
     ├── AuditChainBroken               the audit trail was edited, reordered or cut
     └── SecurityError                  keys, secrets, signatures
          └── KeyStoreError             a key is missing, unreadable or expired
"""

from __future__ import annotations


class YinqiError(Exception):
    """Base of every error Yinqi raises on purpose."""


class InvalidValue(YinqiError, ValueError):
    """A value from outside (a file, a form, a bank) failed its own checks."""


class MoneyError(InvalidValue):
    """An amount cannot be represented exactly in its currency."""


class CurrencyError(MoneyError):
    """Unknown currency code, or amounts in two currencies combined."""


class PrecisionError(MoneyError):
    """An amount has more decimal places than its currency's minor units."""


class IdentifierError(InvalidValue):
    """An account number, bank code or party identifier is malformed."""


class ConfigError(YinqiError):
    """A setting or config file is wrong; the message names the file, the key and the fault."""


class IllegalTransition(YinqiError):
    """A payment was asked to move to a state its current state cannot reach."""


class StoreError(YinqiError):
    """The database refused an operation or is not in the expected shape."""


class SchemaOutOfDate(StoreError):
    """The database schema is behind the code: run `yinqi init` to migrate it."""


class ConcurrencyConflict(StoreError):
    """Another worker changed the same row first; reload and decide again."""


class AuditChainBroken(YinqiError):
    """The audit trail does not verify: a row was edited, deleted, inserted or reordered."""


class SecurityError(YinqiError):
    """A key, secret or signature check failed."""


class KeyStoreError(SecurityError):
    """A key is missing, cannot be decrypted, or has expired."""
