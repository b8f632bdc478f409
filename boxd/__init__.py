"""boxd: a container runtime for Linux, usable as a Trio library and as a daemon."""

__version__ = "0.1.0"
