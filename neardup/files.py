"""Where image bytes come from: a local path, or an fsspec URL (``s3://``, ``gs://``, ``file://``,
``memory://``, ...) when ``fetch.folder.images`` names one.

Every stage reads images through :func:`open_input` (the decoder, the content hash), so a manifest
whose ``path`` column holds URLs works in every stage and on Dask workers, which read the same URLs.
fsspec (a dependency of DVC) ships the local, memory and HTTP file systems; the others are its
plug-ins (``pip install s3fs``, ``gcsfs``, ``adlfs``), named in the error when one is missing.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass

from neardup.contract import UserError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(path) -> bool:
    """True for ``scheme://...`` strings (a Windows drive letter ``C:\\`` is not one)."""
    return isinstance(path, str) and bool(_URL.match(path))


def open_input(path):
    """A binary file object of ``path``: the file itself, or a URL's bytes in memory (one read)."""
    if not is_url(path):
        return open(path, "rb")
    import fsspec

    with fsspec.open(path, "rb") as fh:
        return io.BytesIO(fh.read())


def input_size(path) -> int:
    """Size in bytes of a local file or of the object at a URL."""
    if not is_url(path):
        return os.path.getsize(path)
    fs, inner = url_fs(path, "the manifest")
    return int(fs.size(inner))


def url_fs(url: str, param: str):
    """``(filesystem, path inside it)`` of ``url``; a missing fsspec plug-in is a one-line error."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise UserError(f"{param} {url}: {exc}") from None


@dataclass(frozen=True)
class RemoteFile:
    """One object under a URL folder: its URL, size and version (ETag, checksum or time, as the store gives)."""

    url: str
    size: int
    version: str


def list_url(url: str, *, param: str) -> list[RemoteFile]:
    """Every file under the folder ``url``, sorted by URL.

    Raises
    ------
    UserError
        The plug-in for the scheme is missing, or ``url`` is not a folder that can be listed.
    """
    fs, root = url_fs(url, param)
    try:
        if not fs.isdir(root):
            raise UserError(f"{param} {url} is not a folder (nothing is listed under it); check the URL")
        found = fs.find(root, detail=True)
    except OSError as exc:
        raise UserError(f"{param} {url} cannot be listed ({exc}); check the URL and your credentials") from None
    out = []
    for inner, info in sorted(found.items()):
        version = next((str(info[k]) for k in ("ETag", "etag", "md5", "checksum", "mtime", "LastModified", "created")
                        if info.get(k) is not None), "")
        out.append(RemoteFile(url=fs.unstrip_protocol(inner), size=int(info.get("size") or 0), version=version))
    return out


def listing_line(url: str, *, param: str) -> str:
    """One line naming ``url``, its file count and a digest of its listing (names, sizes, versions):
    a change there changes the line, which the fetch stage depends on."""
    files = list_url(url, param=param)
    digest = hashlib.sha256("".join(f"{f.url}\t{f.size}\t{f.version}\n" for f in files).encode()).hexdigest()
    return f"# {url}: {len(files)} files, listing sha256 {digest}"
