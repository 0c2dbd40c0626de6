"""Keep the entries of ``fetch.input`` that DVC cannot hash out of DVC's sight.

``fetch.input`` is a folder dependency of the fetch stage, so DVC reads every file under it to hash
it, before running any stage. Measured with DVC 3.67: a FIFO or a character device such as
``/dev/zero`` makes ``dvc repro`` and ``dvc status`` hang for ever; a dangling symlink, a symlink
loop, a socket or a file it may not read makes them abort (``[Errno 2]``, ``[Errno 40]``,
``[Errno 6]``, ``[Errno 13]``). An entry named in the repository's ``.dvcignore`` is left out of the
hash, and DVC reads that file again after each stage command.

:func:`guard_input` lists every such entry in a managed block of ``<repo root>/.dvcignore`` (the
block is rewritten, or removed, to name exactly the current ones; the rest of the file is left
alone). The ``fetch_input`` stage (:func:`run`, always run first) calls it before DVC hashes the
folder for fetch; the fetch stage calls it again for a direct run. :func:`run` also checks every
params group first (:func:`check_params`), and gives an image folder at a URL (``fetch.folder.images:
s3://...``), which DVC cannot hash, a line with a digest of its listing instead
(:func:`neardup.files.listing_line`), so fetch reruns when it changes.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from neardup.cache import check_cache_dir
from neardup.contract import atomic_write
from neardup.fetch.walk import walk_folder
from neardup.files import is_url, listing_line
from neardup.params import GROUPS, ParamsError, params_from_dict

log = logging.getLogger(__name__)

DVCIGNORE = ".dvcignore"
BEGIN = ("# >>> neardup fetch: entries of fetch.input that DVC cannot hash (FIFOs, devices, sockets, broken "
         "symlinks, unreadable files); rewritten on every fetch, do not edit")
END = "# <<< neardup fetch"
#: Characters with a meaning in .dvcignore (gitignore) patterns, escaped with a backslash.
_SPECIAL = set("\\*?[]!#")


def find_repo_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) holding ``.dvc/``."""
    here = Path(start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


#: A pattern class matching one control character (a newline, a tab) or one byte of a file name that is
#: not UTF-8 (Python keeps it as a lone surrogate), and nothing else: such names cannot be written as
#: they are, and ``?`` would also match ordinary names such as ``a.jpg`` for ``\xff.jpg``.
_UNWRITABLE = "[! -\ud7ff\ue000-\U0010ffff]"


def ignore_pattern(relative: str) -> str:
    """A .dvcignore line matching exactly the repository-relative POSIX path ``relative``.

    Special characters are escaped; a control character or a byte that is not UTF-8 becomes a class
    that matches only such characters; trailing white space (which DVC strips from each line)
    becomes a one-character class. A line DVC's pattern parser would reject (it would then fail on
    every command) is never written: such a name falls back to ``?`` for every character that is
    not a letter, digit, ``.``, ``_``, ``-`` or ``/``.
    """
    out = []
    for ch in relative:
        if ord(ch) < 32 or "\udc80" <= ch <= "\udcff":
            out.append(_UNWRITABLE)
        elif ch in _SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    end = len(out)
    while end and out[end - 1].isspace():  # DVC strips each line: trailing spaces become classes
        end -= 1
        out[end] = f"[{out[end]}]"
    line = "/" + "".join(out)
    if not _valid(line):
        line = "/" + "".join(c if c.isalnum() or c in "._-/" else "?" for c in relative)
    return line


def _valid(line: str) -> bool:
    """Whether DVC's pattern parser (pathspec's gitignore patterns) accepts ``line``; True without pathspec."""
    try:
        from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern
    except ImportError:  # pragma: no cover - pathspec comes with DVC
        return True
    try:
        GitIgnoreSpecPattern.pattern_to_regex(line)
    except Exception:  # noqa: BLE001 - GitIgnorePatternError, ValueError
        return False
    return True


def unsafe_entries(folder: Path) -> list:
    """The entries under ``folder`` DVC cannot hash (:attr:`neardup.fetch.walk.Entry.dvc_unsafe`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        return [e for e in walk_folder(folder, symlinks="all") if e.dvc_unsafe]
    except OSError:
        return []


def _replace_block(text: str, lines: list[str]) -> str:
    """``text`` (a .dvcignore) with the managed block replaced by ``lines`` (removed when empty)."""
    kept, inside = [], False
    for line in text.splitlines():
        if line == BEGIN:
            inside = True
        elif inside and line == END:
            inside = False
        elif not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    if lines:
        kept += ([""] if kept else []) + [BEGIN, *lines, END]
    return "\n".join(kept) + "\n" if kept else ""


def guard_input(input_dir: str | os.PathLike, *, repo_root: Path | None = None) -> list[str]:
    """Write the .dvcignore lines for the entries of ``input_dir`` DVC cannot hash; return them.

    Parameters
    ----------
    input_dir : path-like
        ``fetch.input`` (relative to the working directory, as DVC resolves it).
    repo_root : Path, optional
        The DVC repository; default: found from the working directory. Outside a DVC repository
        (or with ``input_dir`` outside it) nothing is written, and a warning names the entries.

    Returns
    -------
    list of str
        The patterns of the managed block (empty: the block is absent).
    """
    input_dir = Path(os.path.abspath(input_dir))
    entries = unsafe_entries(input_dir)
    repo_root = repo_root if repo_root is not None else find_repo_root()
    if entries:
        first = entries[0]
        log.warning("fetch.input %s holds %d entries DVC cannot hash (e.g. %s: %s)%s", input_dir, len(entries),
                    first.path, first.reason,
                    "; they are listed in .dvcignore so that dvc neither hangs nor aborts on them"
                    if repo_root is not None else "")
    if repo_root is None:
        return []
    repo_root = Path(os.path.abspath(repo_root))
    try:
        prefix = input_dir.relative_to(repo_root).as_posix()
    except ValueError:
        if entries:
            log.warning("fetch.input %s lies outside the DVC repository %s, so .dvcignore cannot hide these "
                        "entries from DVC: remove them", input_dir, repo_root)
        return []
    lines = []
    for entry in entries:
        relative = os.path.relpath(entry.path, input_dir).replace(os.sep, "/")
        lines.append(ignore_pattern(relative if prefix == "." else f"{prefix}/{relative}"))
    path = repo_root / DVCIGNORE
    old = path.read_text(encoding="utf-8", errors="surrogateescape") if path.is_file() else ""
    new = _replace_block(old, lines) if lines or BEGIN in old else old  # no block: the file stays as it is
    if new != old and (new or path.is_file()):
        atomic_write(path, new.encode("utf-8", errors="surrogateescape"))
        log.info("%s: %d entries of fetch.input listed for DVC to ignore", path, len(lines))
    return lines


def check_params(params: dict) -> None:
    """Every params group, before any other stage runs: a bad value stops the run here, in one line
    naming it, before hours of work, and before a value dvc.yaml writes into a command
    (``embed.models``, ``embed.sizes``, ``hash.methods``, ``cluster.hash``) reaches a shell
    (:func:`neardup.params.check_name`). ``cache.dir`` must be a folder this user can write."""
    groups = {group: params_from_dict(params, group) for group in GROUPS}
    if groups["cluster"].hash_weight and groups["cluster"].hash not in groups["hash"].methods:
        raise ParamsError(f"cluster.hash {groups['cluster'].hash!r} is mixed into the CNN variants but not in "
                          f"hash.methods {list(groups['hash'].methods)}: add it there, or set cluster.hash_weight: 0")
    check_cache_dir(groups["cache"].dir)


def run(params: dict, layout) -> None:
    """The fetch_input stage: :func:`check_params`, then :func:`guard_input` on ``fetch.input``; the
    lines written (and one per image folder at a URL) go to ``layout.path("input_check")``, a
    dependency of fetch, so fetch reruns whenever they change. In a ``neardup init`` project (whose
    layout has ``code_check``) that file gets the installed package's :func:`neardup.stage.code_digest`,
    its stages' code dependency."""
    from neardup.stage import code_digest

    check_params(params)
    if "code_check" in layout.paths:
        atomic_write(layout.path("code_check"), code_digest() + "\n")
    fetch = params_from_dict(params, "fetch")
    lines = guard_input(fetch.input)
    for i, spec in enumerate(fetch.sets or [fetch]):
        if spec.source == "folder" and is_url(spec.folder.images):
            param = f"fetch.sets[{i}]" if fetch.sets else "fetch"
            lines.append(listing_line(spec.folder.images, param=f"{param}.folder.images"))
    atomic_write(layout.path("input_check"), "".join(line + "\n" for line in lines))
