"""boxctl: the command-line client of boxd.  Imports no Trio: it must start fast."""
