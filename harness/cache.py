"""A resumable request cache keyed by the model identity and every decoding option.

lm-eval's own ``--use_cache`` keys a request by its text only, so after a change of sampler,
steps or threshold it returns stale generations. Here the cache folder of a run is
``<root>/<model key>/`` where the model key is the SHA-256 of a canonical JSON of everything
that can change an answer: the checkpoint (path, Hub commit and a content fingerprint of its
files), dtype, family, tokenizer, every field of the resolved ``DecodeConfig``, the
loglikelihood options and the dllm-eval version (see ``DLLM.cache_identity``). Each request is
one JSON file ``<reqtype>/<request key>.json`` (request key = SHA-256 of the request type and its
arguments), written as soon as its result exists, atomically (temporary file in the same folder,
``fsync``, ``os.replace``), so a run killed at any point (SIGKILL included) leaves only complete
entries; rerunning the same command reuses them and computes only the rest. Ranks of a
data-parallel run write different files, so no lock is needed. ``meta.json`` records the
identity in clear for people. This module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CACHE_FORMAT = 1
SMALL_FILE = 16 * 1024 * 1024  # files up to this size are hashed whole
EDGE = 1024 * 1024  # bytes hashed at each end of a larger (weights) file


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces; tuples as lists; other objects via repr)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def model_key(identity: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the canonical JSON of ``identity`` (plus the cache format)."""
    payload = canonical_json({"cache_format": CACHE_FORMAT, **identity})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def request_key(reqtype: str, args: Any) -> str:
    """SHA-256 hex digest of one request (its type and its lm-eval arguments)."""
    return hashlib.sha256(canonical_json([reqtype, args]).encode("utf-8")).hexdigest()


def checkpoint_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Content fingerprint of a local checkpoint folder (None if ``path`` is not a folder).

    Small files (configs, tokenizer) are hashed whole; large files (weights) by size and the
    SHA-256 of their first and last MiB, which any change of the weights alters in practice
    while keeping the cost independent of the model size. Modification times are ignored, so a
    copied checkpoint keeps its cache.
    """
    root = Path(path)
    if not root.is_dir():
        return None
    out: dict[str, Any] = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith((".lock", ".pyc")):
            continue
        size = file.stat().st_size
        digest = hashlib.sha256()
        with open(file, "rb") as fh:
            if size <= SMALL_FILE:
                digest.update(fh.read())
            else:
                digest.update(fh.read(EDGE))
                fh.seek(size - EDGE)
                digest.update(fh.read(EDGE))
        out[rel] = [size, digest.hexdigest()]
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RequestCache:
    """Per-request results of one model configuration under ``root``.

    >>> cache = RequestCache(root, identity)          # doctest: +SKIP
    >>> hit, value = cache.get("generate_until", args)
    >>> cache.put("generate_until", args, text)
    """

    def __init__(self, root: str | os.PathLike[str], identity: Mapping[str, Any]) -> None:
        self.identity = dict(identity)
        self.key = model_key(self.identity)
        self.dir = Path(root) / self.key[:32]
        self.hits = 0
        self.computed = 0
        meta = self.dir / "meta.json"
        if not meta.exists():
            atomic_write_text(meta, json.dumps(
                {"cache_format": CACHE_FORMAT, "model_key": self.key, "identity": self.identity},
                indent=2, sort_keys=True, default=repr,
            ))

    def path(self, reqtype: str, args: Any) -> Path:
        return self.dir / reqtype / f"{request_key(reqtype, args)}.json"

    def get(self, reqtype: str, args: Any) -> tuple[bool, Any]:
        """``(True, result)`` if the request is cached, else ``(False, None)``."""
        file = self.path(reqtype, args)
        try:
            entry = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False, None
        if entry.get("args") != json.loads(canonical_json(args)):
            return False, None  # hash collision (never seen) or a foreign file
        return True, entry["result"]

    def put(self, reqtype: str, args: Any, result: Any) -> None:
        """Store one result (atomically; an existing entry is replaced)."""
        atomic_write_text(
            self.path(reqtype, args),
            canonical_json({"args": args, "result": result}),
        )

    def count(self, reqtype: str | None = None) -> int:
        """Number of complete entries (of one request type, or all)."""
        folders = [self.dir / reqtype] if reqtype else [p for p in self.dir.iterdir() if p.is_dir()]
        return sum(1 for d in folders if d.is_dir() for f in d.glob("*.json") if not f.name.startswith("."))

    def stats(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "model_key": self.key, "hits": self.hits, "computed": self.computed}
