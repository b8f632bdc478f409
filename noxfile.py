"""Developer and CI entry points: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``, ``demo``,
``fuzz``."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

LINT_TOOLS = ["ruff>=0.6"]
TYPE_TOOLS = ["mypy>=1.11", "nox"]


def _system_deps(session: nox.Session) -> None:
    """Install the Debian packages a new machine lacks (only when run as root)."""
    if os.geteuid() == 0:
        session.run("sh", ".ci/install-deps", external=True)


def _install(session: nox.Session, extras: str) -> None:
    _system_deps(session)
    session.install(f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite.  Run as root: most tests make real namespaces and mounts."""
    _install(session, "fuse,test")
    if os.geteuid() == 0:
        session.run("sh", ".ci/systemd-root", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install(session, "fuse,test")
    session.install(*TYPE_TOOLS)
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against crun, runc, bubblewrap and Podman; results in bench/results/.
    With the /proc view (the ``fuse`` extra), as users who have /dev/fuse run boxd."""
    _install(session, "fuse,test")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Build boxd, start a daemon on a private root, run one container on `default` (with
    its /proc view: the ``fuse`` extra)."""
    _install(session, "fuse,test")
    session.run("python", "-m", "boxd._demo", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The Engine API fuzzed with schemathesis against moby's API description, on a daemon
    of its own (root; not part of ``tests`` nor CI): ``tools/fuzz_engine_api.py --help``.
    A Ctrl-C is the tool's to handle: it removes what it made before it exits."""
    _install(session, "fuse")
    session.install("schemathesis>=4.32,<5")
    session.run("python", "tools/fuzz_engine_api.py", *session.posargs, interrupt_timeout=None)
