"""One tokenizer per tokenizer content in a process (notebooks 02-06 load a model per run).

Every run of a profile is saved with the base model's tokenizer files, and parsing XLM-R's
``tokenizer.json`` (250,002 pieces) takes about as long as loading the weights. While
:func:`shared_tokenizers` is open, sentence-transformers' tokenizer loading from a local folder
whose tokenizer files (and loading options) equal an earlier folder's returns a shallow copy of
the tokenizer loaded then: the Python wrapper is the model's own (``model_max_length`` and the like
stay per model), the Rust tokenizer underneath is shared. That is safe because the fast
tokenizers set truncation and padding on the Rust tokenizer at every call.
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import xxhash

_TOKENIZER_FILES = ("tokenizer", "special_tokens", "added_tokens", "sentencepiece", "vocab", "spiece", "merges")
_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def tokenizer_key(folder: Path, options: dict) -> str | None:
    """A digest of ``folder``'s tokenizer files and the loading options (None: no tokenizer file there)."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.startswith(_TOKENIZER_FILES))
    if not files:
        return None
    digest = xxhash.xxh3_128()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(repr(sorted(options.items())).encode())
    return digest.hexdigest()


def clear() -> None:
    """Forget every kept tokenizer."""
    with _LOCK:
        _CACHE.clear()


@contextmanager
def shared_tokenizers() -> Iterator[None]:
    """Load tokenizers through the cache while open (``encoders.registry.load_encoder``)."""
    from sentence_transformers.base.modules import transformer as st_transformer

    original = st_transformer.AutoProcessor

    class SharedProcessor:
        @staticmethod
        def from_pretrained(name, **options):
            folder = Path(str(name))
            key = tokenizer_key(folder, options) if folder.is_dir() else None
            if key is None:
                return original.from_pretrained(name, **options)
            with _LOCK:
                kept = _CACHE.get(key)
            if kept is None:
                kept = original.from_pretrained(name, **options)
                with _LOCK:
                    _CACHE[key] = kept
            return copy.copy(kept)

    st_transformer.AutoProcessor = SharedProcessor
    try:
        yield
    finally:
        st_transformer.AutoProcessor = original
