"""The event sink the pipeline tests hand to a Pipeline: it records what was published."""

from __future__ import annotations

from collections.abc import Sequence

from fxconnector.core.model.bar import OhlcvEvent


class RecordingSink:
    """An EventSink that keeps every final and closed preview it is given, in order."""

    def __init__(self) -> None:
        self.finals_seen: list[OhlcvEvent] = []
        self.closed_previews: list[OhlcvEvent] = []

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        self.finals_seen.extend(events)

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        self.closed_previews.extend(events)
