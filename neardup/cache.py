"""Resumable stores keyed by image content (sha256): embedding vectors, and what scanning learned.

One folder per descriptor (model, input size, pooling, weights; or hash and size): adding images to a
dataset embeds only the new ones, renamed or re-fetched files are never embedded twice, and a run
killed mid-way resumes from its last finished chunk. Each chunk is written to a temporary file
and renamed into place, so a chunk on disk is always complete.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Part of every descriptor key: bump it when preprocessing or the models change, so old vectors
#: are never reused for new settings.
CACHE_VERSION = 1


def _write_chunk(folder: Path, sha256s: list[str], suffix: str, write) -> None:
    """Write one chunk as ``chunk_<hash of its sha256s><suffix>`` atomically: ``write(tmp_path)``
    fills a temporary file (a name the chunk pattern never matches), which is then renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256("\n".join(sha256s).encode()).hexdigest()[:20]
    tmp = folder / f".{name}.{os.getpid()}.tmp{suffix}"
    write(tmp)
    os.replace(tmp, folder / f"chunk_{name}{suffix}")


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
    (named by content, so two processes filling one cache never write the same file).

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
        for chunk in chunks:
            with np.load(chunk, allow_pickle=False) as z:
                self._vectors.update(zip(z["sha256"].tolist(), z["vectors"]))
        if self._vectors:
            log.info("vector cache %s: %d vectors in %d chunks", self.folder, len(self._vectors), len(chunks))

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
        _write_chunk(self.folder, sha256s, ".npz",
                     lambda tmp: np.savez(tmp, sha256=np.asarray(sha256s, dtype=str), vectors=vectors))
        if self.settings and not (self.folder / "settings.json").is_file():
            (self.folder / "settings.json").write_text(json.dumps(self.settings, indent=1, default=str))
        self._vectors.update(zip(sha256s, vectors))


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

    def __init__(self, root: Path, key: str = f"inspect-v{CACHE_VERSION}", *, flush_every: int = 4096):
        self.folder = Path(root) / key
        self.flush_every = flush_every
        self._known: dict[str, tuple[dict | None, str | None]] = {}
        self._pending: dict[str, tuple[dict | None, str | None]] = {}
        for chunk in sorted(self.folder.glob("chunk_*[0-9a-f].json")) if self.folder.is_dir() else []:
            for sha, info, reason in json.loads(chunk.read_text()):
                self._known[sha] = (info, reason)

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
        _write_chunk(self.folder, [r[0] for r in rows], ".json", lambda tmp: tmp.write_text(json.dumps(rows)))
        self._known.update(self._pending)
        self._pending = {}
