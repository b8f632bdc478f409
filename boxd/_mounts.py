"""``-v``/``--volume`` and ``--mount`` as Docker reads them, into volume records' fields.

``-v [SOURCE:]DEST[:OPTIONS]``: a SOURCE that is a path (``/...``, ``./...``, ``.``,
``../...``) binds a host path; any other SOURCE names a volume the daemon keeps (made on
first use); no SOURCE makes an anonymous volume (``-v /data``, ``-v /data:ro``).

``--mount type=bind|volume|tmpfs,src=..,dst=..,...`` is one CSV record (quotes as in
Docker's csv reader): its keys and their values are checked here, and a bad one is named.
A bind's ``bind-recursive`` and a volume's ``volume-subpath`` are Docker 25's and 26's,
``type=image`` (with ``image-subpath``) Docker 28's and Podman's.

Imported by boxctl: only the standard library, nothing slow.
"""

from __future__ import annotations

import posixpath

from ._units import parse_size, volume_options

# A volume's name, as Docker's [a-zA-Z0-9][a-zA-Z0-9_.-]+ (no regular expression: `re`
# and what it imports are ~4 ms of every `boxctl run -v`).
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")
PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")  # Go's strconv.ParseBool
_FALSE = ("0", "f", "F", "false", "FALSE", "False")
# bind-recursive's values (docker/cli's opts/mount.go), as the volume record keeps them.
RECURSIVE = {"enabled": "", "disabled": "disabled", "writable": "writable", "readonly": "readonly"}


def clean_path(path: str) -> str:
    """``path`` as Go's ``path.Clean`` gives it, which Docker's daemon shows a mount's
    source and destination as: no ``.``, ``..``, doubled or trailing ``/`` (normpath keeps
    a leading ``//``)."""
    clean = posixpath.normpath(path)
    return "/" + clean.lstrip("/") if clean.startswith("//") else clean


def is_local(path: str) -> bool:
    """Whether ``path`` stays inside the directory it is relative to, as Go's
    ``filepath.IsLocal`` (Docker's daemon's check of a subpath): not empty, not absolute,
    not climbing out."""
    clean = posixpath.normpath(path) if path else ""
    return bool(path) and not path.startswith("/") and clean != ".." and not clean.startswith("../")


def valid_volume_name(name: str) -> bool:
    """Whether ``name`` is one Docker allows a volume: a letter or digit, then one or more
    letters, digits, ``_``, ``.`` or ``-``."""
    return len(name) > 1 and name[0] in _ALNUM and all(ch in _NAME_CHARS for ch in name)


def check_volume_name(name: str) -> str:
    if not valid_volume_name(name) or len(name) > 255:
        raise ValueError(
            f"invalid volume name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at "
            "least two characters (for a host directory, give an absolute path)"
        )
    return name


def _is_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..")


def _are_options(text: str) -> bool:
    try:
        volume_options(text, text)
    except ValueError:
        return False
    return True


def parse_volume_flag(spec: str) -> dict[str, object]:
    """``-v`` -> the fields of a volume record; ``host`` is relative as the user wrote it
    (the caller makes it absolute), empty for a volume."""
    parts = spec.split(":")
    if len(parts) == 1:
        source, dest, options = "", spec, ""
    elif len(parts) == 2 and _are_options(parts[1]):
        source, dest, options = "", parts[0], parts[1]  # DEST:OPTIONS, an anonymous volume
    elif len(parts) in (2, 3) and parts[0]:
        source, dest, options = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    else:
        raise ValueError(f"invalid volume {spec!r}: use [SOURCE:]DEST[:OPTIONS]")
    if not dest.startswith("/"):
        raise ValueError(f"invalid volume {spec!r}: {dest!r} is not an absolute path")
    fields: dict[str, object] = {"host": "", "container": dest, **volume_options(spec, options)}
    if fields.get("propagation") and not _is_path(source):  # dockerd's refusal
        raise ValueError(
            f"invalid volume {spec!r}: propagation {fields['propagation']!r} is for binds of "
            'host paths (invalid mount config for type "volume")'
        )
    if _is_path(source):
        if fields.get("nocopy"):
            raise ValueError(f"invalid volume {spec!r}: nocopy is for volumes, not host paths")
        fields["host"] = source
    elif source:
        check_volume_name(source)
        fields["volume"] = source
    return fields


def parse_bind(spec: str) -> dict[str, object]:
    """An Engine API ``HostConfig.Binds`` entry (``docker run -v``): as :func:`parse_volume_flag`
    but for ``DEST:OPTIONS``, a mode without a source (Podman's anonymous volume with
    options), which Docker's daemon refuses in its words."""
    parts = spec.split(":")
    if len(parts) == 2 and _are_options(parts[1]):
        raise ValueError(f"invalid volume specification: '{spec}'")
    return parse_volume_flag(spec)


class Mount:
    """One ``--mount`` (or an Engine API ``HostConfig.Mounts`` entry), checked."""

    def __init__(self, what: str, *, option: str = "--mount") -> None:
        self.what = what  # the value as given (or where it is), for messages
        self.option = option
        self.type = "volume"
        self.source = ""
        self.target = ""
        self.read_only = False
        self.nocopy = False
        self.propagation = ""
        self.recursive = ""  # bind-recursive, as Volume.recursive
        self.subpath = ""  # volume-subpath
        self.create_source = False  # bind-create-src: a missing source directory is made
        self.labels: dict[str, str] = {}
        self.options: dict[str, str] = {}  # volume-opt: the local driver's, for a new volume
        self.tmpfs_options: list[str] = []
        self.given: set[str] = set()  # the type-specific option families used

    def error(self, reason: str) -> ValueError:
        return ValueError(f"invalid {self.option} {self.what!r}: {reason}")

    def set_propagation(self, value: str) -> None:
        value = value.lower()
        if value not in PROPAGATIONS:
            raise self.error(f"bind-propagation {value!r}: use one of {', '.join(PROPAGATIONS)}")
        self.propagation = "" if value == "rprivate" else value  # "": the default

    def set_recursive(self, value: str) -> None:
        if value not in RECURSIVE:
            raise self.error(
                f"invalid value for bind-recursive: {value!r} (use enabled, disabled, writable"
                " or readonly)"
            )
        self.recursive = RECURSIVE[value]

    def set_subpath(self, value: str, kind: str = "volume") -> None:
        """``volume-subpath`` (``image-subpath``): a path inside the volume (image), as
        Go's ``filepath.IsLocal`` and Docker's daemon check it: relative, not climbing
        out, not empty."""
        if not is_local(value):
            raise self.error(
                f"{kind}-subpath {value!r}: subpath must be a relative path within the {kind}"
            )
        self.subpath = posixpath.normpath(value)

    def set_driver(self, value: str) -> None:
        if value and value != "local":
            raise self.error(f"volume-driver {value!r} is not supported: the one driver is local")

    def set_volume_opt(self, value: str) -> None:
        key, eq, option = value.partition("=")
        if not key or not eq:
            raise self.error(f"invalid volume-opt {value!r}: use volume-opt=KEY=VALUE")
        self.options[key] = option

    def set_tmpfs_size(self, value: str) -> None:
        self.tmpfs_options.append(f"size={parse_size(value, what=f'tmpfs-size in {self.what!r}')}")

    def set_tmpfs_mode(self, value: str) -> None:
        if not value or any(c not in "01234567" for c in value) or int(value, 8) > 0o7777:
            raise self.error(f"tmpfs-mode {value!r} is not an octal mode")
        self.tmpfs_options.append(f"mode={int(value, 8):o}")

    def check(self) -> None:
        """The whole mount, once every key is read (Docker's daemon-side rules)."""
        if self.type not in ("bind", "volume", "tmpfs", "image"):
            raise self.error(
                f"type {self.type!r} is not supported (use bind, volume, tmpfs or image)"
            )
        for family in self.given:
            if family != self.type:
                raise self.error(f"cannot mix '{family}-*' options with mount type '{self.type}'")
        if not self.target:
            raise self.error("target is required (dst=, destination= or target=)")
        if not self.target.startswith("/"):
            raise self.error(f"target {self.target!r} is not an absolute path")
        if self.type == "bind" and not self.source:
            raise self.error("type=bind needs a source (src= or source=)")
        if self.type == "bind" and not self.source.startswith("/"):
            raise self.error(f"bind source {self.source!r} is not an absolute path")
        if self.type == "volume" and self.source:
            check_volume_name(self.source)
        if (self.labels or self.options) and not self.source:
            raise self.error("volume-label and volume-opt need a named volume (src=NAME)")
        if self.type == "tmpfs" and self.source:
            raise self.error("type=tmpfs takes no source")
        if self.type == "image" and not self.source:
            raise self.error("type=image needs an image (src= or source=)")
        if self.subpath and not self.source:
            raise self.error("volume-subpath needs a named volume (src=NAME), not an anonymous one")
        if self.recursive in ("writable", "readonly") and not self.read_only:
            raise self.error(f"bind-recursive={self.recursive} needs readonly too")
        if self.recursive == "readonly" and self.propagation in ("rslave", "slave"):
            raise self.error(
                f"bind-recursive=readonly and bind-propagation={self.propagation}: what the host"
                " mounts later would not be read-only (use rprivate)"
            )

    def volume_fields(self) -> dict[str, object]:
        """A bind or volume as a volume record's fields."""
        fields: dict[str, object] = {"host": "", "container": self.target}
        if self.type == "bind":
            fields["host"] = self.source
        elif self.source:
            fields["volume"] = self.source
        if self.read_only:
            fields["read_only"] = True
        if self.nocopy:
            fields["nocopy"] = True
        if self.propagation:
            fields["propagation"] = self.propagation
        if self.recursive:
            fields["recursive"] = self.recursive
        if self.subpath:
            fields["subpath"] = self.subpath
        return fields

    def image_fields(self) -> dict[str, str]:
        """An image mount as an :class:`boxd.ImageMount`'s fields (always read-only)."""
        fields = {"image": self.source, "target": self.target}
        return {**fields, "subpath": self.subpath} if self.subpath else fields

    def tmpfs_spec(self) -> str:
        """A tmpfs as ``--tmpfs`` takes it."""
        options = [*self.tmpfs_options, *(["ro"] if self.read_only else [])]
        return f"{self.target}:{','.join(options)}" if options else self.target


def _bool(mount: Mount, key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise mount.error(f"invalid value for {key}: {value!r} (use true or false)")


_VOLUME_KEYS = ("volume-nocopy", "volume-label", "volume-driver", "volume-opt", "volume-subpath")
# The docker CLI's words: the option's old spelling is refused, pointing to the new one.
_NONRECURSIVE = "bind-nonrecursive is deprecated, use bind-recursive=disabled instead"


def parse_mount(text: str) -> Mount:
    """``--mount`` as Docker's CLI parses it; ValueError naming a bad key or value."""
    import csv  # here: the daemon parses no --mount until a container is created with one

    mount = Mount(text)
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise mount.error(str(exc)) from None
    fields = rows[0] if rows else []
    if not fields:
        raise mount.error("empty")
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq:
            if key in ("readonly", "ro"):
                mount.read_only = True
            elif key == "volume-nocopy":
                mount.nocopy = True
                mount.given.add("volume")
            elif key == "bind-nonrecursive":
                raise mount.error(_NONRECURSIVE)
            elif key == "bind-create-src":
                mount.create_source = True
                mount.given.add("bind")
            else:
                raise mount.error(f"invalid field {field!r}: must be a key=value pair")
            continue
        if key == "type":
            mount.type = value.lower()
        elif key in ("source", "src"):
            mount.source = value
        elif key in ("target", "dst", "destination"):
            mount.target = value
        elif key in ("readonly", "ro"):
            mount.read_only = _bool(mount, key, value)
        elif key == "consistency":
            pass  # macOS only: ignored on Linux, as by Docker
        elif key in ("bind-propagation", "bind-nonrecursive", "bind-recursive", "bind-create-src"):
            mount.given.add("bind")
            if key == "bind-propagation":
                mount.set_propagation(value)
            elif key == "bind-recursive":
                mount.set_recursive(value)
            elif key == "bind-create-src":
                mount.create_source = _bool(mount, key, value)
            else:
                raise mount.error(_NONRECURSIVE)
        elif key in _VOLUME_KEYS:
            mount.given.add("volume")
            if key == "volume-subpath":
                mount.set_subpath(value)
            elif key == "volume-nocopy":
                mount.nocopy = _bool(mount, key, value)
            elif key == "volume-label":
                name, _, label_value = value.partition("=")
                if name:
                    mount.labels[name] = label_value
            elif key == "volume-driver":
                mount.set_driver(value)
            else:
                mount.set_volume_opt(value)
        elif key == "image-subpath":
            mount.given.add("image")
            mount.set_subpath(value, "image")
        elif key in ("tmpfs-size", "tmpfs-mode"):
            mount.given.add("tmpfs")
            if key == "tmpfs-size":
                mount.set_tmpfs_size(value)
            else:
                mount.set_tmpfs_mode(value)
        else:
            raise mount.error(f"unexpected key {key!r} in {field!r}")
    mount.check()
    return mount
