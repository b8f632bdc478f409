"""The ``boxd`` command (and ``python -m boxd``): the daemon, with SIGHUP ignored while it
loads.

SIGHUP asks a running daemon to reload its configuration (dockerd's signal: see
:func:`boxd._daemon.reload`), but its default action ends a process, and the daemon takes
the signal over only once its modules are loaded (~0.5 s): a reload sent at a daemon just
started (a configuration management run, a logrotate hook) ended it.  Ignored from here
on, as this module imports nothing of the daemon's; the daemon's own handler replaces the
ignoring, so its children and containers get SIGHUP's default action as ever.
"""

from __future__ import annotations

import signal


def main() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from ._daemon import main as daemon

    daemon()
