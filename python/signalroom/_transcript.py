"""Transcripts: the JSON Lines files of a session's events, their format (:class:`TranscriptRecord`),
the writer :meth:`signalroom.Session.record` starts (:class:`Recorder`) and the reader
(:func:`read_transcript`)."""

from __future__ import annotations

import importlib
import json
import os
import time
from typing import IO, TYPE_CHECKING, Any, Literal, Optional, TypedDict, overload

from ._events import Event, RejoinedEvent
from ._native import ConnectionEvent, ConnectionPropertyChangedEvent, SessionDisconnectedEvent, SignalEvent

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._session import Session

__all__ = ["Recorder", "TranscriptRecord", "read_transcript"]

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


class Recorder:
    """Writes a session's events to a JSON Lines file (made by :meth:`Session.record`). Each line
    is flushed as it is written, so a crash loses nothing already seen."""

    def __init__(self, session: Session, path: str | os.PathLike[str]) -> None:
        self._session: Session | None = session
        #: The file written to.
        self.path = os.fspath(path)
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    @property
    def closed(self) -> bool:
        """Whether it stopped writing."""
        return self._file is None

    def close(self) -> None:
        """Stops writing and closes the file. Closing twice does nothing."""
        session, self._session = self._session, None
        if session is not None:
            try:
                session._dispatcher.observers.remove(self._write)
            except ValueError:
                pass
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, event: Event) -> None:
        file, session = self._file, self._session
        if file is None or session is None:
            return
        record: dict[str, Any] = {
            "time": time.time(),
            "event": event.name,
            "type": None,
            "data": None,
            "from": None,
            "to": session.connection_id,
            "reason": None,
        }
        if isinstance(event, SignalEvent):
            record["type"] = event.type
            record["data"] = event.data
            record["from"] = None if event.from_ is None else event.from_.connection_id
        elif isinstance(event, (ConnectionEvent, RejoinedEvent)):
            record["from"] = event.connection.connection_id
            record["data"] = event.connection.data
            record["reason"] = event.reason
        elif isinstance(event, ConnectionPropertyChangedEvent):
            record["type"] = event.property
            record["data"] = event.new_value
        elif isinstance(event, SessionDisconnectedEvent):
            record["reason"] = event.reason
        file.write(json.dumps(record, ensure_ascii=False) + "\n")
        if isinstance(event, SessionDisconnectedEvent):
            self.close()


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
