"""Walk an input folder so that every directory entry is accounted for.

:func:`walk_folder` returns one :class:`Entry` per non-folder entry, and per folder it cannot or will
not enter: a regular file to scan, or a reason to skip it at once (a FIFO, socket or device, a
dangling or looping symlink, a symlink to a folder (never followed), a symlink the ``fetch.symlinks``
policy does not follow, a folder or file that cannot be read, a name that is not UTF-8).
:mod:`neardup.fetch.folder` scans what it returns; :mod:`neardup.fetch.guard` uses it to keep the
entries DVC cannot hash out of DVC's sight.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from neardup.contract import OUTPUT_MARKER

log = logging.getLogger(__name__)

_SPECIAL_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                  (stat.S_ISBLK, "block device"))


@dataclass(frozen=True)
class Entry:
    """One directory entry found by :func:`walk_folder`.

    Attributes
    ----------
    path : Path
        The entry as found (``root / ...``; a followed symlink keeps its own path).
    reason : str or None
        None for a file to scan, else why it is skipped without being read.
    dvc_unsafe : bool
        True when DVC cannot hash it as part of a folder dependency (it would hang on a FIFO or a
        device, or abort on a dangling or looping symlink, a socket or an unreadable file).
    """

    path: Path
    reason: str | None
    dvc_unsafe: bool = False


def _kind(mode: int) -> str:
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), "unknown type")


def _is_utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes in the name (kept as surrogates by os.fsdecode)
        return False


def _classify(path: Path, is_link: bool, root_real: str, symlinks: str) -> Entry:
    """What to do with one non-folder entry (or a symlink of any kind)."""
    if not _is_utf8(path):
        return Entry(path, "file name is not valid UTF-8: not scanned (rename it)", True)
    if is_link:
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Entry(path, f"dangling symlink: its target {target} does not exist", True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return Entry(path, f"symlink loop: its target {target} leads back to it", True)
            return Entry(path, f"unreadable symlink: {exc.strerror or exc}", True)
        if stat.S_ISDIR(st.st_mode):
            return Entry(path, f"symlink to a folder: not followed ({target})")
        if not stat.S_ISREG(st.st_mode):
            return Entry(path, f"symlink to a special file ({_kind(st.st_mode)}): not an image", True)
        if not os.access(path, os.R_OK):
            return Entry(path, "unreadable: permission denied", True)
        real = os.path.realpath(path)
        inside = real.startswith(root_real.rstrip(os.sep) + os.sep)
        if symlinks == "none":
            return Entry(path, "symlink: not followed (fetch.symlinks: none)")
        if symlinks == "inside" and not inside:
            return Entry(path, f"symlink outside the input folder: not followed ({real}; fetch.symlinks: inside)")
        return Entry(path, None)
    try:
        st = os.lstat(path)
    except OSError as exc:
        return Entry(path, f"unreadable: {exc.strerror or exc}", True)
    if not stat.S_ISREG(st.st_mode):
        return Entry(path, f"special file ({_kind(st.st_mode)}): not an image", True)
    if not os.access(path, os.R_OK):
        return Entry(path, "unreadable: permission denied", True)
    return Entry(path, None)


def shown_path(path: Path) -> str:
    """``path`` as text that can be written to a UTF-8 table (bytes that are not UTF-8 as ``\\xff``)."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _folder_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "unreadable folder: permission denied"
    return f"unreadable folder: {exc.strerror or exc}"


def walk_folder(root: Path, *, symlinks: str) -> list[Entry]:
    """Every entry under ``root``, recursively, in sorted order, symlinks never followed into folders.

    Parameters
    ----------
    root : Path
        A readable folder.
    symlinks : {'inside', 'none', 'all'}
        Which symlinks to files are scanned (``fetch.symlinks``): those whose target lies inside
        ``root``, none, or all.

    Returns
    -------
    list of Entry
        One per non-folder entry (regular file, symlink, FIFO, socket, device) and one per folder
        that cannot be entered; folders that can be entered are walked, not listed, except a folder
        holding :data:`neardup.contract.OUTPUT_MARKER` (a ``find`` output inside the images).

    Raises
    ------
    OSError
        If ``root`` itself cannot be listed.
    """
    root = Path(root)
    root_real = os.path.realpath(root)
    out: list[Entry] = []
    todo = [root]
    while todo:
        folder = todo.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if folder == root:
                raise
            out.append(Entry(folder, _folder_reason(exc), True))
            continue
        if folder != root and any(entry.name == OUTPUT_MARKER for entry in entries):
            log.info("%s: a neardup output folder, not scanned", folder)
            continue
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            try:
                is_link, is_dir = entry.is_symlink(), entry.is_dir(follow_symlinks=False)
            except OSError as exc:
                out.append(Entry(path, f"unreadable: {exc.strerror or exc}", True))
                continue
            if is_dir:
                subfolders.append(path)
            else:
                out.append(_classify(path, is_link, root_real, symlinks))
        todo.extend(reversed(subfolders))
    return sorted(out, key=lambda e: str(e.path))
