"""Where the SMC consumer stands in one series, kept in the series' SMC snapshot (`state`).

Rules:
- The engine of a series is fed every final bar from `origin_ms` (the open of the first bar it
  was ever fed) on, in order. `last_open_ms` is the open of the last bar fed and published:
  every hint of a bar up to it is in the stream and in the snapshot, none of a later bar is.
- A restart re-warms a fresh engine with the bars `origin_ms..last_open_ms` (their hints were
  published already and are dropped), then goes on from the first final after `last_open_ms`:
  the same engine over the same bars gives the same hints, so the output is exactly the
  uninterrupted run's (no hint twice, none skipped).
- `seq` numbers the series' writes, so a retried write is applied once (`writes`).
- Internal bookkeeping of the consumer: not a public contract, but closed and validated like
  one (a malformed state is a ContractViolation, never guessed around).

Pure: no I/O.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from fxconnector.core.errors import ContractViolation
from fxconnector.core.utils.json_codec import encode

_Ms = Annotated[int, msgspec.Meta(ge=0)]


class SmcState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The consumer's position in one series (module rules)."""

    origin_ms: _Ms
    last_open_ms: _Ms
    #: How many final bars the engine has been fed from origin_ms through last_open_ms.
    bars: Annotated[int, msgspec.Meta(ge=1)]
    #: The number of the write that stored this state (one more per atomic write of the
    #: series): a write whose number the snapshot already holds was applied, and is not
    #: applied again (a retry after a lost reply never XADDs a hint twice).
    seq: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if self.last_open_ms < self.origin_ms:
            raise ValueError(f"last_open_ms {self.last_open_ms} < origin_ms {self.origin_ms}")


def encode_state(state: SmcState) -> bytes:
    return encode(state)


def decode_state(raw: bytes | str) -> SmcState:
    try:
        return msgspec.json.decode(raw, type=SmcState)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise ContractViolation(f"SMC state: {exc}") from exc
