"""Transcripts: the JSON Lines files written by :meth:`signalroom.Session.record`, read back."""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, Literal, Optional, TypedDict, overload

__all__ = ["TranscriptRecord", "read_transcript"]

TranscriptRecord = TypedDict(
    "TranscriptRecord",
    {
        "time": float,
        "event": str,
        "type": Optional[str],
        "data": Optional[str],
        "from": Optional[str],
        "to": str,
        "reason": Optional[str],
    },
)
TranscriptRecord.__doc__ = """One line of a transcript: ``time`` (seconds since the epoch), ``event`` (``signal:chat``,
``connectionCreated``, ...), ``type`` (a signal's type), ``data``, ``from`` (the sender's or the
concerned participant's connection id), ``to`` (the recording participant's connection id),
``reason`` (why a participant left or the session ended)."""

COLUMNS = ("time", "event", "type", "data", "from", "to", "reason")


@overload
def read_transcript(path: str | os.PathLike[str], *, frame: Literal[False] = False) -> list[TranscriptRecord]: ...
@overload
def read_transcript(path: str | os.PathLike[str], *, frame: Literal[True]) -> Any: ...  # a pandas.DataFrame
def read_transcript(path: str | os.PathLike[str], *, frame: bool = False) -> Any:
    """The records of a transcript written by :meth:`Session.record`, in order: a list of
    :class:`TranscriptRecord` dicts, or with ``frame=True`` a ``pandas.DataFrame`` (one row a
    record, ``time`` as UTC timestamps), which needs pandas (``pip install 'signalroom[pandas]'``).

    Raises ``ValueError`` naming the line for a line that is not a transcript record.

    Example::

        records = signalroom.read_transcript("chat.jsonl")
        chats = [r["data"] for r in records if r["event"] == "signal:chat"]

        df = signalroom.read_transcript("chat.jsonl", frame=True)
        df[df.event == "signal:chat"].groupby("from").size()
    """
    records: list[TranscriptRecord] = []
    with open(os.fspath(path), encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{os.fspath(path)}:{number}: not JSON ({error})") from None
            if not isinstance(record, dict) or not {"time", "event"} <= record.keys():
                raise ValueError(f"{os.fspath(path)}:{number}: not a transcript record: {line.strip()[:200]}")
            records.append(record)  # type: ignore[arg-type]
    if not frame:
        return records
    try:
        pandas: Any = importlib.import_module("pandas")  # optional: signalroom[pandas]
    except ImportError:
        raise ImportError(
            "read_transcript(..., frame=True) needs pandas: pip install 'signalroom[pandas]' (or pandas)"
        ) from None
    df = pandas.DataFrame.from_records(records, columns=list(COLUMNS))
    df["time"] = pandas.to_datetime(df["time"], unit="s", utc=True)
    return df
