"""session.record(path) and signalroom.read_transcript: a session's events as JSON Lines, and back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import signalroom
from signalroom.testing import ParticipantFactory


async def test_a_recorded_session_reads_back_as_records_and_as_a_dataframe(
    participant: ParticipantFactory, server_api: signalroom.ServerApi, tmp_path: Path
) -> None:
    path = tmp_path / "chat.jsonl"
    alice = await participant("lobby", data="alice")
    recorder = alice.record(path)
    bob = await participant("lobby", data="bob")
    await bob.signal("hello", type="chat")
    news_came = alice.wait_for("signal:news")
    await server_api.signal("lobby", "from the server", type="news", to=[alice.connection])
    await news_came
    gone = alice.wait_for("connectionDestroyed")
    await bob.disconnect()
    await gone
    with recorder:
        pass
    assert recorder.closed
    await alice.signal("not recorded", type="chat")  # after close()

    records = signalroom.read_transcript(path)
    lines = path.read_text().splitlines()
    assert len(records) == len(lines) == 5
    assert all(set(json.loads(line)) == {"time", "event", "type", "data", "from", "to", "reason"} for line in lines)
    myself, created, chat, news, destroyed = records
    assert (myself["event"], myself["from"]) == ("connectionCreated", alice.connection_id)
    assert created["event"] == "connectionCreated" and created["from"] == bob.connection_id
    assert created["data"] == "bob" and created["to"] == alice.connection_id
    assert (chat["event"], chat["type"], chat["data"], chat["from"]) == (
        "signal:chat",
        "chat",
        "hello",
        bob.connection_id,
    )
    assert (news["type"], news["data"], news["from"]) == ("news", "from the server", None)
    assert (destroyed["event"], destroyed["reason"]) == ("connectionDestroyed", "disconnect")
    assert records[0]["time"] <= records[2]["time"] <= records[4]["time"]

    frame = signalroom.read_transcript(path, frame=True)
    assert list(frame.columns) == ["time", "event", "type", "data", "from", "to", "reason"]
    assert len(frame) == 5
    assert frame[frame.event == "signal:chat"]["data"].tolist() == ["hello"]
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]" or str(frame["time"].dtype).startswith("datetime64")


async def test_recording_stops_by_itself_when_the_session_ends(participant: ParticipantFactory, tmp_path: Path) -> None:
    alice = await participant("lobby")
    recorder = alice.record(tmp_path / "t.jsonl")
    await alice.disconnect()
    assert recorder.closed
    records = signalroom.read_transcript(tmp_path / "t.jsonl")
    assert [r["event"] for r in records] == ["connectionCreated", "sessionDisconnected"]
    assert records[-1]["reason"] == "disconnect"


def test_read_transcript_names_a_bad_line_and_asks_for_pandas_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"time": 1, "event": "signal"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a transcript record"):
        signalroom.read_transcript(bad)
    good = tmp_path / "good.jsonl"
    good.write_text('{"time": 1, "event": "signal"}\n')
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    assert len(signalroom.read_transcript(good)) == 1
    with pytest.raises(ImportError, match=r"pip install 'signalroom\[pandas\]'"):
        signalroom.read_transcript(good, frame=True)
