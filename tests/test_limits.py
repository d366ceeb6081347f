"""The limits docs/server/limits.md states hold as stated: a signal type of 256 bytes (without its
``signal:`` prefix) passes, from the client and through REST; 257 is refused, counted alike."""

from __future__ import annotations

import pytest

import signalroom
from signalroom.testing import ParticipantFactory


async def test_a_256_byte_type_is_accepted_and_257_refused_counting_what_the_sender_writes(
    participant: ParticipantFactory, server_api: signalroom.ServerApi
) -> None:
    alice = await participant("lobby")
    longest = "t" * 256
    for written in (longest, f"signal:{longest}"):
        got = alice.wait_for(f"signal:{longest}")
        await alice.signal("fits", type=written)
        assert (await got).type == longest
    got = alice.wait_for(f"signal:{longest}")
    await server_api.signal("lobby", "fits too", type=longest)
    assert (await got).data == "fits too"
    for written in ("t" * 257, "signal:" + "t" * 257):
        with pytest.raises(signalroom.InvalidSignalError, match="257 bytes, over the limit of 256"):
            await alice.signal("too long", type=written)
    with pytest.raises(signalroom.SignalroomError, match="257 bytes"):
        await server_api.signal("lobby", "too long", type="t" * 257)
