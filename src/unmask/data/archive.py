"""Safe extraction of dataset archives (tar, tar.gz/xz/bz2, webdataset shards).

A crafted archive can write outside the target folder through a member named with an absolute
path (``/etc/x``), a ``..`` component (``../../x``), or a symbolic / hard link whose target
leaves the folder (then a later member written "through" the link). :func:`safe_extract`
checks every member before anything is written and refuses the whole archive with one
:class:`UnsafeArchiveError` naming the archive and the member; device files and FIFOs are
refused too. Extraction goes to a temporary sibling folder renamed into place at the end, so an
interrupted extraction leaves no half-filled target.

Python's own ``tarfile`` ``filter="data"`` (3.12+, back-ported to 3.11.4) applies the same rules;
it is used as a second line of defence when available.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
from pathlib import Path

__all__ = ["UnsafeArchiveError", "check_member", "safe_extract"]


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder (or is a device file)."""


def _inside(name: str) -> str | None:
    """The normalised relative path of ``name`` if it stays inside the root, else None."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return None
    norm = posixpath.normpath(name.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or posixpath.isabs(norm):
        return None
    return norm


def check_member(member: tarfile.TarInfo, archive: str | Path = "<archive>") -> None:
    """Raise :class:`UnsafeArchiveError` if extracting ``member`` could write outside the root."""
    where = f"archive {archive}: member {member.name!r}"
    rel = _inside(member.name)
    if rel is None:
        raise UnsafeArchiveError(f"{where} has an absolute or '..' path (refused)")
    if member.issym() or member.islnk():
        target = member.linkname
        if member.issym():  # relative to the link's own folder
            target = (
                posixpath.join(posixpath.dirname(rel), target)
                if not posixpath.isabs(target)
                else target
            )
        if _inside(target) is None:
            raise UnsafeArchiveError(
                f"{where} links to {member.linkname!r}, outside the extraction folder (refused)"
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a device file or FIFO (refused)")


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract ``archive`` into the folder ``dest`` (created; an existing one is replaced only
    once the extraction has succeeded). Every member is checked first (:func:`check_member`).

    Raises:
        UnsafeArchiveError: naming the archive and the first offending member; nothing is
            written then.
        ValueError: the file is not a readable tar archive.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            links: dict[str, str] = {}
            for m in members:
                check_member(m, archive)
                rel = _inside(m.name)
                # A member below a symlink member would be written through the link.
                parents = [p for p in links if rel.startswith(p + "/")]
                if parents:
                    raise UnsafeArchiveError(
                        f"archive {archive}: member {m.name!r} lies below the link "
                        f"{parents[0]!r} (refused)"
                    )
                if m.issym():
                    links[rel] = m.linkname
            tmp = dest.parent / f".{dest.name}.extracting"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)  # noqa: S202 - checked above
    except (tarfile.TarError, EOFError) as e:
        raise ValueError(f"archive {archive} cannot be read: {e}") from None
    old = dest.parent / f".{dest.name}.old"
    if dest.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
