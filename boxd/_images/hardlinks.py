"""Hard links in the tars boxd writes (layers, exports, a build's COPY): a file of several
names is written once, its other names as links to it, as Docker's layers keep them."""

from __future__ import annotations

import os
import stat
import tarfile

# A file of several names: (device, inode) -> the name it was written under, so that its
# other names are hard links to it in the tar, as Docker's layers and exports keep them
# (git's /usr/lib/git-core: a hundred names of one binary), not copies.
Links = dict[tuple[int, int], str]


def add_hard_link(
    tar: tarfile.TarFile, info: tarfile.TarInfo, st: os.stat_result, links: Links
) -> bool:
    """Add ``info`` as a hard link if its file was already written under another name
    (True); else False, and the caller writes it (noting a file of several names in
    ``links`` with :func:`note_link`)."""
    earlier = links.get((st.st_dev, st.st_ino)) if stat.S_ISREG(st.st_mode) else None
    if earlier is None or st.st_nlink < 2:
        return False
    info.type = tarfile.LNKTYPE
    info.linkname = earlier
    tar.addfile(info)
    return True


def note_link(st: os.stat_result, name: str, links: Links) -> None:
    """A regular file just written as ``name``: its other names link to it."""
    if st.st_nlink > 1:
        links[(st.st_dev, st.st_ino)] = name
