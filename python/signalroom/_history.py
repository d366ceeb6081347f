"""Signal history (signalroom's extension): what a session keeps of its signals, and what it kept."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HistoryEntry", "SignalHistory"]


@dataclass(frozen=True)
class SignalHistory:
    """What a session keeps of its broadcast signals (``ServerApi.create_session(...,
    signal_history=...)``, or ``Server(signal_history=...)`` for every session created without
    one): the last ``size`` of the types ``types`` (empty: every type), at most ``max_bytes`` and
    ``ttl_seconds`` old (0: no age limit). Signals to chosen participants are never kept.

    Example::

        await api.create_session("lobby", signal_history=SignalHistory(size=100, ttl_seconds=3600, types=["chat"]))
    """

    size: int
    ttl_seconds: int = 0
    types: list[str] = field(default_factory=list)
    max_bytes: int = 1 << 20

    def to_json(self) -> str:
        """The REST field ``signalHistory``, as JSON text."""
        return json.dumps(
            {"size": self.size, "ttlSeconds": self.ttl_seconds, "types": list(self.types), "maxBytes": self.max_bytes}
        )


@dataclass(frozen=True)
class HistoryEntry:
    """A signal a session kept (``ServerApi.signal_history``)."""

    #: Its number in the session: increasing along the history (``since=`` takes it).
    seq: int
    #: When it was sent, in ms since the epoch.
    created_at: int
    #: The sender's connection id; ``None`` for a signal sent through the REST API.
    from_: str | None
    #: The wire type, e.g. ``signal:chat`` (``None``: it had none).
    type: str | None
    #: The data.
    data: str | None

    @classmethod
    def _from_json(cls, item: dict[str, Any]) -> HistoryEntry:
        return cls(
            seq=int(item["seq"]),
            created_at=int(item["createdAt"]),
            from_=item.get("from"),
            type=item.get("type"),
            data=item.get("data"),
        )
