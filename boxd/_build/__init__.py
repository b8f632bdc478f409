"""Image builds from a Dockerfile, as Docker's classic builder makes them.

:mod:`.dockerfile` reads the file (directives, continuations, flags, JSON forms,
variable substitution); :mod:`.ignore` is .dockerignore; :mod:`.instructions` applies
the metadata instructions to a configuration; :mod:`.sources` finds, hashes and tars
COPY's and ADD's files; :mod:`.runner` runs the steps on the supervisor with the layer
cache; :mod:`.verbs` is the daemon's ``BuildRequest``.
"""
