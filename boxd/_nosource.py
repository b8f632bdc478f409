"""The daemon keeps no source text of the methods attrs and cattrs generate.

attrs writes each class's ``__init__``, ``__repr__``, ``__eq__``... as source, compiles it
and stores the text in :mod:`linecache` (``<attrs generated methods ...>``) so that a
traceback through them can quote their lines; cattrs does the same for every structure and
unstructure function it makes (``<cattrs generated ...>``).  For the daemon's ~170 record
and message classes and the converters made for them that text is ~0.7 MB that stays for
the daemon's life, a fifth of what it holds above a bare Trio program.  Importing this
module (the daemon does, before its own modules) makes :mod:`linecache` refuse those
entries: the code is compiled and runs as before; a traceback through a generated method
names it (``File "<attrs generated methods boxd._records.Mount>", line 3, in __init__``)
without quoting the line.  Cleared after the fact instead, the text's memory would stay
scattered among the other objects of the same pages rather than be given back.
"""

from __future__ import annotations

import linecache
from typing import Any

_GENERATED = ("<attrs generated ", "<cattrs generated ")


class _WithoutGeneratedSource(dict[str, Any]):
    """linecache's cache, except that the generated code's text is not kept.  attrs and
    cattrs store it with ``setdefault`` and go on when they get their own entry back."""

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key.startswith(_GENERATED):
            return default
        return super().setdefault(key, default)


if not isinstance(linecache.cache, _WithoutGeneratedSource):
    linecache.cache = _WithoutGeneratedSource(linecache.cache)
