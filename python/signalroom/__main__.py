"""``python -m signalroom serve``: the signalroom server, from the installed package.

The command line is the ``signalroom`` binary's own (one definition, in Rust): the same flags,
defaults, environment variables (``OPENVIDU_SECRET``) and ``--help``. It prints
``signalroom ready: <url>`` on stdout once it accepts connections, logs to stderr
(``RUST_LOG=debug`` for more), and on SIGTERM or Ctrl-C tells every participant
(``openviduServerStopped``) and exits.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from . import _native


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``python -m signalroom`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The server handles Ctrl-C itself (a clean stop); Python's handler would raise
    # KeyboardInterrupt once it returns.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return _native.serve_cli(["signalroom", *args])


if __name__ == "__main__":
    sys.exit(main())
