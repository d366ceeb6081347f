"""``python -m signalroom serve``: the signalroom server, from the installed package.

Prints ``signalroom ready: <url>`` on stdout once it accepts connections, logs to stderr
(``RUST_LOG=debug`` for more), and on SIGTERM or Ctrl-C tells every participant
(``openviduServerStopped``) and exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from . import DEFAULT_SECRET, Server, SignalroomError, enable_logging


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:4443, or :0 for any free port)")
    return (host.strip("[]") or "127.0.0.1", int(port))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m signalroom", description="OpenVidu 2.32-compatible signalling")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server until SIGTERM or Ctrl-C")
    serve.add_argument("--listen", type=_listen, default=("127.0.0.1", 4443), help="HOST:PORT (port 0: a free one)")
    serve.add_argument("--public-url", help="URL clients reach this server at; tokens point there")
    serve.add_argument("--secret", default=os.environ.get("OPENVIDU_SECRET"), help="REST secret (env OPENVIDU_SECRET)")
    serve.add_argument("--tls-cert", help="TLS certificate chain (PEM); needs --tls-key")
    serve.add_argument("--tls-key", help="TLS private key (PEM); needs --tls-cert")
    serve.add_argument("--max-signal-bytes", type=int, help="largest signal data accepted, in bytes")
    serve.add_argument("--send-queue", type=int, help="frames queued per participant before it is disconnected")
    serve.add_argument("--reconnection-grace-secs", type=float, help="how long a dropped participant may reconnect")
    serve.add_argument("--log", default="info", help="log filter when RUST_LOG is not set (default: info)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``python -m signalroom``; returns the exit code."""
    args = _parser().parse_args(argv)
    enable_logging(args.log)
    secret = args.secret
    if secret is None:
        print(
            f"WARNING: no --secret or OPENVIDU_SECRET given: using the development secret {DEFAULT_SECRET!r}. "
            "Anybody who knows it can create sessions and tokens.",
            file=sys.stderr,
        )
        secret = DEFAULT_SECRET
    host, port = args.listen
    try:
        server = Server(
            secret=secret,
            host=host,
            port=port,
            public_url=args.public_url,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            max_signal_bytes=args.max_signal_bytes,
            send_queue=args.send_queue,
            reconnection_grace=args.reconnection_grace_secs,
        ).start()
    except (SignalroomError, ValueError) as error:
        print(f"signalroom: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"signalroom ready: {server.url}", flush=True)
    while not stop.wait(0.5):
        pass
    print("signalroom: stopping: participants are told openviduServerStopped", file=sys.stderr)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
