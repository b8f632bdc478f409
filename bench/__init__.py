"""Benchmarks of boxd against crun, runc, bubblewrap and Podman: ``python -m bench``."""
