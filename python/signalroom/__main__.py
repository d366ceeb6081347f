"""``python -m signalroom``: the ``signalroom`` command line, from the installed package (which
installs it as the ``signalroom`` command too).

It is the binary's own (one definition, in Rust): the same commands, flags, defaults, environment
variables and ``--help``.

- ``python -m signalroom serve ...``: the signalroom server. It prints ``signalroom ready: <url>``
  on stdout once it accepts connections, logs to stderr (``RUST_LOG=debug`` for more), and on
  SIGTERM or Ctrl-C tells every participant (``openviduServerStopped``) and exits.
- ``python -m signalroom listen TOKEN_OR_SESSION``: joins a session (with a token, or with a new
  connection of the session named, made through the REST API) and prints every signal, join and
  leave as it happens, one line each, until Ctrl-C or the session ends.
- ``python -m signalroom send SESSION DATA [--type T] [--to CON ...]`` (or ``signal``): sends one
  signal through the REST API.
- ``sessions``, ``kick``, ``token``: the admin commands.

The commands that talk to a server find it with ``--url`` (env ``SIGNALROOM_URL`` or
``OPENVIDU_URL``, default ``http://127.0.0.1:4443``) and ``--secret`` (env ``OPENVIDU_SECRET``,
default ``MY_SECRET``). ``python -m signalroom help COMMAND`` tells more.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from . import _native


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``python -m signalroom`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The command line handles Ctrl-C itself (a clean stop); Python's handler would raise
    # KeyboardInterrupt once it returns.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return _native.serve_cli(["signalroom", *args])


if __name__ == "__main__":
    status = main()
    # Nothing of Python's is left to run: leave without finalising the interpreter, which would
    # wait for the extension's runtime threads.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
