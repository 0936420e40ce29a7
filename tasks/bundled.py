"""Bundled benchmark data: gzip-compressed JSONL test splits shipped in ``tasks/data``.

Every file is listed in ``tasks/data/MANIFEST.json`` with its sha256 (of the compressed bytes),
record count, source and license; :func:`load_records` checks the hash before returning records,
so a corrupted or edited file fails loudly instead of silently changing a score. The files are
written by :func:`build_bundle` from the upstream copies (see ``tasks/data/SOURCES.md``):

    python -m dllm_eval.tasks.bundled /path/to/shared/data     # (re)build tasks/data
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
MANIFEST = DATA_DIR / "MANIFEST.json"

# bundle name -> (file under the shared data dir, source, license)
SOURCES: dict[str, tuple[str, str, str]] = {
    "gsm8k_test": ("gsm8k/test.jsonl", "openai/grade-school-math (test split)", "MIT"),
    "gsm8k_train": (
        "gsm8k/train.jsonl",
        "openai/grade-school-math (train split, few-shot pool)",
        "MIT",
    ),
    "math500_test": (
        "math/math500_test.jsonl",
        "openai/prm800k MATH-500 subset of hendrycks/math",
        "MIT",
    ),
    "math_test": ("math/math_full_test.jsonl", "hendrycks/math (test split, 5000)", "MIT"),
    "mmlu_test": ("mmlu/mmlu_test.jsonl", "hendrycks/test (MMLU test split)", "MIT"),
    "mmlu_dev": ("mmlu/mmlu_dev.jsonl", "hendrycks/test (MMLU dev split, few-shot pool)", "MIT"),
    "humaneval": ("humaneval/HumanEval.jsonl.gz", "openai/human-eval HumanEval.jsonl.gz", "MIT"),
    "humaneval_plus": (
        "humaneval_plus/HumanEvalPlus.jsonl.gz",
        "evalplus HumanEvalPlus v0.1.10",
        "Apache-2.0",
    ),
}


class BundleIntegrityError(RuntimeError):
    """A bundled data file is missing or does not match its recorded sha256."""


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, dict]:
    if not MANIFEST.exists():
        raise BundleIntegrityError(f"{MANIFEST} is missing; rebuild with build_bundle()")
    return json.loads(MANIFEST.read_text())


def bundle_names() -> list[str]:
    return sorted(manifest())


@functools.lru_cache(maxsize=16)
def _load(name: str) -> tuple[dict, ...]:
    entries = manifest()
    if name not in entries:
        raise ValueError(f"bundle={name!r} is not valid; accepted: {', '.join(sorted(entries))}")
    entry = entries[name]
    path = DATA_DIR / entry["file"]
    if not path.exists():
        raise BundleIntegrityError(f"bundled data file {path} is missing")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != entry["sha256"]:
        raise BundleIntegrityError(
            f"{path} has sha256 {digest}, expected {entry['sha256']}: the file is corrupted or edited"
        )
    text = gzip.decompress(raw).decode("utf-8")
    records = tuple(json.loads(line) for line in text.split("\n") if line.strip())
    if len(records) != entry["records"]:
        raise BundleIntegrityError(f"{path}: {len(records)} records, expected {entry['records']}")
    return records


def load_records(name: str) -> list[dict]:
    """Records of bundle ``name`` (sha256-checked), as fresh dicts."""
    return [dict(r) for r in _load(name)]


def _gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def build_bundle(shared_data: str | Path, out_dir: str | Path = DATA_DIR) -> dict[str, dict]:
    """Write ``<name>.jsonl.gz`` and ``MANIFEST.json`` into ``out_dir`` from the upstream files."""
    shared_data, out_dir = Path(shared_data), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict] = {}
    for name, (rel, source, license_) in SOURCES.items():
        src = shared_data / rel
        raw = src.read_bytes()
        plain = gzip.decompress(raw) if src.suffix == ".gz" else raw
        lines = [ln for ln in plain.decode("utf-8").split("\n") if ln.strip()]
        for ln in lines:
            json.loads(ln)
        gz = _gzip_bytes(("\n".join(lines) + "\n").encode("utf-8"))
        fname = f"{name}.jsonl.gz"
        (out_dir / fname).write_bytes(gz)
        entries[name] = {
            "file": fname,
            "sha256": hashlib.sha256(gz).hexdigest(),
            "upstream_sha256": hashlib.sha256(raw).hexdigest(),
            "records": len(lines),
            "source": source,
            "license": license_,
        }
    (out_dir / "MANIFEST.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    manifest.cache_clear()
    _load.cache_clear()
    return entries


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m dllm_eval.tasks.bundled SHARED_DATA_DIR", file=sys.stderr)
        sys.exit(2)
    for k, v in build_bundle(sys.argv[1]).items():
        print(f"{k:16s} {v['records']:6d} records  {v['sha256'][:16]}")
