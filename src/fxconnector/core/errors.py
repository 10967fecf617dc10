"""The one exception tree of fxconnector.

    FxConnectorError
    ├── ConfigError            bad config file, profile, calendar or CLI input (the user's to fix)
    ├── ContractViolation      a payload or bar breaks the public contract (a bug, ours or a peer's)
    ├── BadBrokerData          the broker sent unusable data (counted, sampled, never fatal)
    ├── StoreError             the SSOT cannot be used as asked
    │   ├── StoreLocked        another process holds the writer lock
    │   └── StoreCorrupt       a stored line or row cannot be read back
    ├── CommandError           a command was refused (unknown, bad args, over budget)
    ├── SymbolLeased           another process of the namespace publishes a configured symbol
    ├── RevisionTooOld         a revised final bar is older than the SMC engine can re-derive from
    └── TransientIOError       retryable: the same call may succeed later
        ├── BrokerDisconnected the broker session or stream is gone
        └── SurfaceUnavailable Redis cannot be reached

Library exceptions are translated into these at the boundary (`raise X(...) from exc`); only
TransientIOError and its children are retried.
"""


class FxConnectorError(Exception):
    """Root of every error fxconnector raises on purpose."""


class ConfigError(FxConnectorError):
    """Configuration, calendar profile or command-line input is invalid."""


class ContractViolation(FxConnectorError):
    """A value breaks the public contract (DESIGN §3)."""


class BadBrokerData(FxConnectorError):
    """The broker sent data that cannot be used."""


class StoreError(FxConnectorError):
    """The store cannot do what was asked."""


class StoreLocked(StoreError):
    """Another process holds the store's writer lock."""


class StoreCorrupt(StoreError):
    """A stored record cannot be read back."""


class CommandError(FxConnectorError):
    """A command was refused."""


class SymbolLeased(FxConnectorError):
    """Another connector process sharing the namespace holds a configured symbol's lease."""


class RevisionTooOld(FxConnectorError):
    """A revised final bar is beyond the SMC engine's revision horizon: rerun it from the store."""


class TransientIOError(FxConnectorError):
    """A retryable I/O failure."""


class BrokerDisconnected(TransientIOError):
    """The broker session or stream is gone."""


class SurfaceUnavailable(TransientIOError):
    """The Redis surface cannot be reached."""
