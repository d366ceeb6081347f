"""``python -m signalroom``: the server, and a terminal's view of a session; the package installs
the same as the ``signalroom`` command.

- ``python -m signalroom serve ...``: the signalroom server, from the installed package. The
  command line is the ``signalroom`` binary's own (one definition, in Rust): the same flags,
  defaults, environment variables (``OPENVIDU_SECRET``) and ``--help``. It prints
  ``signalroom ready: <url>`` on stdout once it accepts connections, logs to stderr
  (``RUST_LOG=debug`` for more), and on SIGTERM or Ctrl-C tells every participant
  (``openviduServerStopped``) and exits.
- ``python -m signalroom listen TOKEN_OR_SESSION``: joins a session (with a token, or with a new
  connection of the session named, made through the REST API) and prints every signal as it
  arrives, one line each, until Ctrl-C or the session ends.
- ``python -m signalroom send SESSION DATA [--type T] [--to CON ...]``: sends one signal through
  the REST API.

``listen`` and ``send`` find the server with ``--url`` (env ``OPENVIDU_URL``, default
``http://127.0.0.1:4443``) and ``--secret`` (env ``OPENVIDU_SECRET``, default ``MY_SECRET``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import sys
from collections.abc import Sequence

from . import _native
from ._api import ServerApi
from ._native import ConnectionEvent, SessionDisconnectedEvent, SignalEvent
from ._session import Event, connect
from .errors import SignalroomError

DEFAULT_URL = "http://127.0.0.1:4443"
DEFAULT_SECRET = "MY_SECRET"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="OpenVidu 2.x signalling from a terminal.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def rest_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            default=os.environ.get("OPENVIDU_URL", DEFAULT_URL),
            help=f"the server's URL (env OPENVIDU_URL; default {DEFAULT_URL})",
        )
        p.add_argument(
            "--secret",
            default=os.environ.get("OPENVIDU_SECRET", DEFAULT_SECRET),
            help="the REST API secret (env OPENVIDU_SECRET; default MY_SECRET)",
        )

    listen = commands.add_parser(
        "listen",
        help="join a session and print its signals as they arrive",
        description="Join a session and print each signal as it arrives (time, type, sender, data), "
        "and who joins and leaves, until Ctrl-C or the session ends.",
    )
    listen.add_argument(
        "target", metavar="TOKEN_OR_SESSION", help="a token (ws://...), or a session id: a connection is created for it"
    )
    listen.add_argument("--data", default="signalroom listen", help="this participant's client data")
    listen.add_argument("--type", dest="kind", help="print only signals of this type")
    listen.add_argument("--json", action="store_true", help="print one JSON object a line")
    listen.add_argument("--count", type=int, help="exit after this many signals")
    rest_options(listen)

    send = commands.add_parser(
        "send", help="send one signal through the REST API", description="Send one signal through the REST API."
    )
    send.add_argument("session", help="the session id")
    send.add_argument("data", help="the signal's data")
    send.add_argument("--type", dest="kind", help="the signal's type, e.g. chat (received as signal:chat)")
    send.add_argument("--to", nargs="+", metavar="CONNECTION_ID", help="only these participants (default: everybody)")
    rest_options(send)
    return parser


def _line(event: Event, as_json: bool) -> str | None:
    now = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    if isinstance(event, SignalEvent):
        sender = "server" if event.from_ is None else event.from_.connection_id
        if as_json:
            return json.dumps({"event": event.name, "type": event.type, "from": sender, "data": event.data})
        return f"{now} {event.name} from {sender}: {event.data}"
    if isinstance(event, ConnectionEvent):
        if as_json:
            c = event.connection
            return json.dumps({"event": event.name, "from": c.connection_id, "data": c.data, "reason": event.reason})
        verb = "joined" if event.name == "connectionCreated" else f"left ({event.reason})"
        return f"{now} {event.connection.connection_id} {verb}"
    if isinstance(event, SessionDisconnectedEvent):
        if as_json:
            return json.dumps({"event": event.name, "reason": event.reason})
        return f"{now} session over ({event.reason})"
    return None


async def _listen(args: argparse.Namespace) -> int:
    token = args.target
    if not token.startswith(("ws://", "wss://")):
        api = ServerApi(args.url, args.secret)
        await api.create_session(token)
        token = (await api.create_connection(token)).token
    async with connect(token, data=args.data) as session:
        print(f"listening to session {session.session_id} as {session.connection_id}", file=sys.stderr, flush=True)
        done = asyncio.get_running_loop().create_future()
        count = 0

        def show(event: Event) -> None:
            nonlocal count
            if isinstance(event, SignalEvent):
                if args.kind is not None and event.type != args.kind:
                    return
                count += 1
            line = _line(event, args.json)
            if line is not None:
                print(line, flush=True)
            finished = (args.count is not None and count >= args.count) or isinstance(event, SessionDisconnectedEvent)
            if finished and not done.done():
                done.set_result(None)

        for name in ("signal", "connectionCreated", "connectionDestroyed", "sessionDisconnected"):
            session.on(name, show)
        await done
    return 0


async def _send(args: argparse.Namespace) -> int:
    api = ServerApi(args.url, args.secret)
    await api.signal(args.session, args.data, type=args.kind, to=args.to)
    print(f"sent to session {args.session}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``python -m signalroom`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("listen", "send"):
        # The server handles Ctrl-C itself (a clean stop); Python's handler would raise
        # KeyboardInterrupt once it returns.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        return _native.serve_cli(["signalroom", *args])
    # The `signalroom` command the package installs, or `python -m signalroom`.
    command = os.path.basename(sys.argv[0])
    prog = "signalroom" if command in ("signalroom", "signalroom.exe") else "python -m signalroom"
    parsed = _parser(prog).parse_args(args)
    try:
        return asyncio.run(_listen(parsed) if parsed.command == "listen" else _send(parsed))
    except KeyboardInterrupt:
        return 130
    except SignalroomError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
