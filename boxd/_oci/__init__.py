"""``boxd-runtime``: an OCI runtime (runc's command line) on boxd's spawn path, cgroups and
seccomp compiler.  See ``_cli`` for the commands and ``_runtime`` for how they work."""
