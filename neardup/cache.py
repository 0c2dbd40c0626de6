"""Resumable stores keyed by image content (sha256): embedding vectors, and what scanning learned.

One folder per descriptor (model, input size, pooling, weights; or hash and size): adding images to a
dataset embeds only the new ones, renamed or re-fetched files are never embedded twice, and a run
killed mid-way resumes from its last finished chunk. Each chunk is written to a temporary file
and renamed into place, so a chunk on disk is always complete; a vector chunk also carries a checksum
of its content, and a chunk that is unreadable, fails its checksum or sits under another chunk's name
is deleted with a warning when the cache is opened (its vectors are computed again).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from neardup.contract import UserError, atomic_write
from neardup.files import open_input

log = logging.getLogger(__name__)

#: Part of every descriptor key: bump it when preprocessing or the models change, so old vectors
#: are never reused for new settings.
CACHE_VERSION = 3


def user_cache_dir() -> str:
    """Where ``find`` keeps its content cache unless ``cache={"dir": ...}`` says otherwise: the user's
    cache folder (``$XDG_CACHE_HOME``, else ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows,
    ``~/.cache``), ``neardup`` in it; a project keeps params.yaml's ``cache.dir`` (``.neardup_cache``)."""
    if os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path.home() / ".cache"
    return str(base / "neardup")


def sha256_file(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest (64 chars) of the bytes of the file at ``path`` (or URL)."""
    digest = hashlib.sha256()
    with open_input(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_cache_dir(folder: str) -> None:
    """Raise :class:`neardup.params.ParamsError` naming ``cache.dir`` unless ``folder`` ('' = no cache)
    is a folder this user can create and write, before any work that would be cached there."""
    from neardup.params import ParamsError

    if not folder:
        return
    try:
        atomic_write(Path(folder) / ".writable", b"").unlink()
    except (OSError, UserError) as exc:
        raise ParamsError(f"cache.dir {folder!r} is no folder this user can write "
                          f"({getattr(exc, 'strerror', None) or exc}): choose another, or '' for no cache") from None


def _chunk_name(sha256s) -> str:
    """The name part of a chunk holding ``sha256s`` (in order): a hash of the list."""
    return hashlib.sha256("\n".join(sha256s).encode()).hexdigest()[:20]


def _write_chunk(folder: Path, sha256s: list[str], suffix: str, write) -> None:
    """Write one chunk as ``chunk_<hash of its sha256s><suffix>`` atomically: ``write(tmp_path)``
    fills a temporary file (a name the chunk pattern never matches), which is then renamed into place."""
    atomic_write(folder / f"chunk_{_chunk_name(sha256s)}{suffix}", write, suffix=suffix)


def _discard_chunk(chunk: Path, why: str) -> None:
    """Delete a chunk that cannot be trusted, with one warning naming it and why; what it held is
    simply absent from the cache, so it is computed again."""
    try:
        chunk.unlink(missing_ok=True)
        done = "deleted it"
    except OSError as exc:
        done = f"could not delete it ({exc.strerror or exc}); ignoring it"
    log.warning("cache chunk %s %s: %s; its entries will be computed again", chunk, why, done)


def _vectors_checksum(sha256s, vectors: np.ndarray) -> str:
    """sha256 over a chunk's content: its sha256 list, and its vectors' dtype, shape and bytes."""
    vectors = np.ascontiguousarray(vectors)
    digest = hashlib.sha256(b"neardup vector chunk\n")
    digest.update("\n".join(sha256s).encode())
    digest.update(f"\n{vectors.dtype.str} {vectors.shape}\n".encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()


def _read_vector_chunk(chunk: Path) -> tuple[list[str], np.ndarray]:
    """The ``(sha256s, vectors)`` of a chunk file, or ValueError saying why it cannot be trusted."""
    try:
        with np.load(chunk, allow_pickle=False) as z:
            arrays = {name: z[name] for name in ("sha256", "vectors", "checksum") if name in z.files}
    except Exception as exc:  # a truncated or overwritten file: BadZipFile, EOFError, zlib.error, ...
        raise ValueError(f"is unreadable (truncated or not a .npz file: {type(exc).__name__})") from None
    missing = [name for name in ("sha256", "vectors", "checksum") if name not in arrays]
    if missing:
        raise ValueError(f"has no {' / '.join(missing)} array"
                         + (" (written before chunks carried checksums)" if missing == ["checksum"] else ""))
    sha256s, vectors, checksum = arrays["sha256"].astype(str).tolist(), arrays["vectors"], str(arrays["checksum"])
    if not isinstance(sha256s, list) or vectors.ndim != 2 or len(vectors) != len(sha256s):
        raise ValueError(f"has sha256 and vectors arrays that do not match (shapes {arrays['sha256'].shape} and "
                         f"{vectors.shape})")
    if _vectors_checksum(sha256s, vectors) != checksum:
        raise ValueError("fails its checksum (its content was changed after it was written)")
    if chunk.name != f"chunk_{_chunk_name(sha256s)}.npz":
        raise ValueError(f"holds the content of chunk_{_chunk_name(sha256s)}.npz (copied over another chunk's name)")
    return sha256s, vectors


def descriptor_key(**settings) -> str:
    """A short, stable folder name for the settings that determine a vector (sorted JSON, hashed)."""
    text = json.dumps({k: str(v) for k, v in sorted(settings.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def vector_cache(root: str, **settings) -> "VectorCache | None":
    """The vector cache for these settings under ``root`` (``cache.dir``; empty: no cache)."""
    if not root:
        return None
    settings["version"] = CACHE_VERSION
    return VectorCache(Path(root), descriptor_key(**settings), settings)


class VectorCache:
    """Vectors by content hash in ``root / key``, stored as ``chunk_<hash of its sha256s>.npz`` files
    (named by content, so two processes filling one cache never write the same file), each with a
    ``checksum`` array over its sha256s and vectors. Opening the cache verifies every chunk; one that
    is unreadable, has no or a wrong checksum, or does not match its name is deleted with a warning.

    Parameters
    ----------
    root : Path
        Cache root (e.g. ``.neardup_cache``); created when first written.
    key : str
        Folder for one descriptor, from :func:`descriptor_key`.
    settings : dict, optional
        Written once as ``settings.json`` beside the chunks, for people reading the cache.
    """

    def __init__(self, root: Path, key: str, settings: dict | None = None):
        self.folder = Path(root) / key
        self.settings = settings or {}
        self._vectors: dict[str, np.ndarray] = {}
        chunks = sorted(self.folder.glob("chunk_*[0-9a-f].npz")) if self.folder.is_dir() else []
        n_chunks = 0
        for chunk in chunks:
            try:
                sha256s, vectors = _read_vector_chunk(chunk)
            except ValueError as exc:
                _discard_chunk(chunk, str(exc))
                continue
            self._vectors.update(zip(sha256s, vectors))
            n_chunks += 1
        if self._vectors:
            log.info("vector cache %s: %d vectors in %d chunks", self.folder, len(self._vectors), n_chunks)

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._vectors

    def get(self, sha256: str) -> np.ndarray:
        return self._vectors[sha256]

    def add(self, sha256s, vectors: np.ndarray) -> None:
        """Store one finished chunk (written atomically; an empty chunk writes nothing)."""
        sha256s = [str(s) for s in sha256s]
        if not sha256s:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(sha256s):
            raise ValueError(f"{len(sha256s)} sha256s for vectors of shape {vectors.shape}")
        checksum = _vectors_checksum(sha256s, vectors)
        _write_chunk(self.folder, sha256s, ".npz",
                     lambda tmp: np.savez(tmp, sha256=np.asarray(sha256s, dtype=str), vectors=vectors,
                                          checksum=np.asarray(checksum)))
        if self.settings and not (self.folder / "settings.json").is_file():
            (self.folder / "settings.json").write_text(json.dumps(self.settings, indent=1, default=str))
        self._vectors.update(zip(sha256s, vectors))


#: Part of :class:`InspectionCache`'s folder name: bump it when :func:`neardup.images.inspect_image`'s info
#: changes, so entries written without the new fields are never read (2: frames, orientation, pixel_sha256).
INSPECTION_VERSION = 2


def _rows_checksum(rows) -> str:
    """sha256 of an inspection chunk's rows, as canonical JSON."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


class InspectionCache:
    """What scanning found in each file content: ``(info, reason)`` of
    :func:`neardup.images.inspect_image` by sha256, so a re-scan of a grown dataset fully decodes
    only the new files. Stored as JSON chunks in ``root / key``, each written atomically.

    Parameters
    ----------
    root : Path
        Cache root (``cache.dir``).
    key : str
        Folder name; bump it when the inspection changes.
    flush_every : int
        New results kept in memory before a chunk is written (and at :meth:`flush`).
    """

    def __init__(self, root: Path, key: str = f"inspect-v{CACHE_VERSION}.{INSPECTION_VERSION}", *,
                 flush_every: int = 4096):
        self.folder = Path(root) / key
        self.flush_every = flush_every
        self._known: dict[str, tuple[dict | None, str | None]] = {}
        self._pending: dict[str, tuple[dict | None, str | None]] = {}
        for chunk in sorted(self.folder.glob("chunk_*[0-9a-f].json")) if self.folder.is_dir() else []:
            rows = self._verified(chunk)
            if rows is not None:
                self._known.update((sha, (info, reason)) for sha, info, reason in rows)

    @staticmethod
    def _verified(chunk: Path):
        """The rows of one chunk, or None (the chunk discarded with a warning) when it cannot be trusted:
        unreadable, malformed, without or failing its checksum, or named for other content."""
        try:
            data = json.loads(chunk.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            _discard_chunk(chunk, f"is unreadable ({type(exc).__name__})")
            return None
        if not (isinstance(data, dict) and isinstance(data.get("rows"), list) and "checksum" in data):
            _discard_chunk(chunk, "has no checksum (written before chunks carried checksums)")
            return None
        rows = data["rows"]
        if data["checksum"] != _rows_checksum(rows) or not all(isinstance(r, list) and len(r) == 3 for r in rows):
            _discard_chunk(chunk, "fails its checksum")
            return None
        if chunk.name != f"chunk_{_chunk_name([r[0] for r in rows])}.json":
            _discard_chunk(chunk, "holds the content of another chunk (copied over another chunk's name)")
            return None
        return rows

    def __len__(self) -> int:
        return len(self._known) + len(self._pending)

    def get(self, sha256: str):
        """``(info, reason)`` for this content, or None when it was never inspected."""
        return self._known.get(sha256) or self._pending.get(sha256)

    def put(self, sha256: str, info: dict | None, reason: str | None) -> None:
        self._pending[sha256] = (info, reason)
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the pending results as one chunk."""
        if not self._pending:
            return
        rows = [[sha, info, reason] for sha, (info, reason) in sorted(self._pending.items())]
        data = {"checksum": _rows_checksum(rows), "rows": rows}
        _write_chunk(self.folder, [r[0] for r in rows], ".json", lambda tmp: tmp.write_text(json.dumps(data)))
        self._known.update(self._pending)
        self._pending = {}
