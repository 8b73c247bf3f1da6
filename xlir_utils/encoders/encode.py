"""Fast, cached sentence encoding for any sentence-transformers model of the kit.

:func:`encode` prepends the model's prompt for ``kind`` (``model.prompts``), tokenises once,
pads each text to a fixed width bucket (:func:`padded_width`), runs texts of one bucket together in
batches bounded by a padded-token budget under ``torch.inference_mode()``, so that a text's
embedding does not depend on which other texts are encoded with it (``benchmarks/determinism.py``). Results are cached on disk under
``paths.cache_dir()/embeddings/``, keyed by :func:`model_fingerprint`, the texts, the prefix,
the maximum length, the precision and ``cache_key_extra``, in the kit's keyed array store
(:func:`xlir_utils.keyed_arrays.read_keyed_arrays`): a cache file is verified (key, SHA-256 of the
array, shape) before it is trusted, and rebuilt otherwise.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from xlir_utils import environment, paths
from xlir_utils.encoders import prefix as prefix_mod
from xlir_utils.encoders.fingerprint_scope import remembered
from xlir_utils.encoders.prefix import tensor_bytes, weights_hasher
from xlir_utils.environment import apply_threads
from xlir_utils.keyed_arrays import read_keyed_arrays, text_digest, write_keyed_arrays

logger = logging.getLogger(__name__)

TEXT_KINDS = ("query", "passage")
# "fp32": exact. "bf16": a cached bfloat16 copy of the model (weights and activations).
# "bf16-autocast": fp32 weights, matrix products in bfloat16. "auto": "bf16-autocast" on a CPU
# with native bfloat16 (avx512_bf16 / AMX) where it is also measured faster than fp32
# (environment.cpu_bf16_faster), "bf16" on a bf16-capable GPU, else "fp32". On a
# 2-core CPU, autocast was both faster and closer to fp32 than the bf16 copy (benchmarks/encode.py,
# benchmarks/results/encode.json: 2.7x vs 2.4x sentence-transformers' default, min cosine
# 0.999982 vs 0.999954).
PRECISIONS = ("auto", "fp32", "bf16", "bf16-autocast")
DEFAULT_PRECISION = "auto"
# On CPU large matrices fall out of cache: batches above this many padded tokens were
# measured slower (benchmarks/encode.py), so a bigger budget is split further.
CPU_BATCH_TOKENS = 2048
# Every text is padded to the next multiple of BUCKET_TOKENS and shares batches only with texts
# of that width: its row then sees the same shapes whatever else is encoded. Measured on 600
# XQuAD-R sentences in 3 orders and a subset (benchmarks/determinism.py): bfloat16 autocast
# bit-identical (before: up to 7.7e-4 apart), fp32 within 1.3e-7 (one float32 ulp: the CPU's
# fp32 matrix kernels still depend on the number of rows), at the same speed.
BUCKET_TOKENS = 16
# The name of the batching rule, part of every cache and store key of an embedding.
ENCODING_SCHEME = f"bucket{BUCKET_TOKENS}"
_CACHE_VERSION = 2


# ------------------------------------------------------------------------- fingerprint
def _module_config(model) -> dict:
    """Everything besides weights that changes what the model computes."""
    conf: dict = {"modules": []}
    for idx, module in enumerate(model if hasattr(model, "__iter__") else [model]):
        entry: dict = {"idx": idx, "class": f"{type(module).__module__}.{type(module).__qualname__}"}
        if hasattr(module, "get_config_dict"):
            try:
                entry["config"] = module.get_config_dict()
            except Exception:  # noqa: BLE001 - best effort for third-party modules
                entry["config"] = repr(module)
        auto = getattr(module, "auto_model", None)
        if auto is not None:
            hf = auto.config.to_diff_dict()
            entry["hf_config"] = {k: v for k, v in hf.items()
                                  if not k.startswith("_") and k != "transformers_version"}
            # AdapterHub's `active_adapters` is a property (a Stack/Fuse/... setup); transformers'
            # own (PEFT) `active_adapters` is a method that raises without PEFT adapters.
            if isinstance(getattr(type(auto), "active_adapters", None), property):
                entry["active_adapters"] = repr(auto.active_adapters)
            elif getattr(auto, "_hf_peft_config_loaded", False):
                entry["active_adapters"] = repr(auto.active_adapters())
            adapters_config = getattr(auto, "adapters_config", None)
            if adapters_config is not None:
                try:
                    entry["adapters_config"] = adapters_config.to_dict()
                except Exception:  # noqa: BLE001
                    entry["adapters_config"] = repr(adapters_config)
        tok = getattr(module, "tokenizer", None)
        if tok is not None:
            entry["tokenizer"] = _tokenizer_signature(tok)
        conf["modules"].append(entry)
    return conf


def _tokenizer_signature(tok) -> str:
    return remembered("tokenizer", tok, "", lambda: _tokenizer_digest(tok))


def _tokenizer_digest(tok) -> str:
    h = weights_hasher(type(tok).__name__.encode())
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        # truncation/padding are per-call state that transformers sets on the backend: leave them out
        trunc, pad = backend.truncation, backend.padding
        backend.no_truncation()
        backend.no_padding()
        try:
            h.update(backend.to_str().encode())
        finally:
            if trunc is not None:
                backend.enable_truncation(**trunc)
            if pad is not None:
                backend.enable_padding(**pad)
    else:  # slow tokenizer: its vocabulary
        h.update(json.dumps(sorted(tok.get_vocab().items())).encode())
    h.update(json.dumps(sorted(map(str, tok.all_special_tokens))).encode())
    return h.hexdigest()


def model_fingerprint(model) -> str:
    """A digest (:func:`~xlir_utils.encoders.prefix.weights_hasher`) of every parameter and buffer
    (adapter weights included), the module configuration, the tokenizer and the active adapter
    set-up; once per model and set-up within
    :func:`~xlir_utils.encoders.fingerprint_scope.frozen_weights`."""
    setup = json.dumps(_module_config(model), sort_keys=True, default=str)

    def digest() -> str:
        h = weights_hasher(setup.encode())
        for name, t in sorted(model.state_dict(keep_vars=True).items()):
            if t is None:
                continue
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(tensor_bytes(t))
        return h.hexdigest()

    return remembered("model", model, setup, digest)


def embedding_signature(model, precision: str = DEFAULT_PRECISION) -> str:
    """What ``encode(model, ..., precision=precision)`` embeddings depend on beyond the texts:
    the model fingerprint and the concrete precision on the model's device (stores of
    embeddings outside :func:`encode`'s own cache key on it)."""
    return f"{model_fingerprint(model)}|{resolve_precision(precision, _model_device(model))}|{ENCODING_SCHEME}"


# ------------------------------------------------------------------------------- cache
def cache_key(fingerprint: str, texts: Sequence[str], prefix: str, max_seq_length: int,
              precision: str, batch_tokens: int, extra: str = "") -> str:
    """The cache key of one :func:`encode` call. ``batch_tokens`` is the effective budget (under
    fp32 the number of rows in a batch can move an embedding by one float32 ulp)."""
    payload = {
        "v": _CACHE_VERSION, "scheme": ENCODING_SCHEME, "model": fingerprint, "texts": text_digest(texts), "n": len(texts),
        "prefix": prefix, "max_seq_length": int(max_seq_length), "precision": precision,
        "batch_tokens": int(batch_tokens), "extra": extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(key: str) -> Path:
    """The file that holds (or would hold) the embeddings for ``key``."""
    return paths.cache_dir() / "embeddings" / f"{key}.npz"


def _read_cache(path: Path, key: str, n: int) -> np.ndarray | None:
    """The cached array if the file is intact and belongs to ``key``; else None (with a warning
    when a file is there but unreadable or not what its key says: it is then rebuilt)."""
    stored = read_keyed_arrays(path, key)
    if stored is None:
        return None
    emb = stored.get("embeddings")
    if emb is None or emb.dtype != np.float32 or emb.ndim != 2 or emb.shape[0] != n:
        logger.warning("embedding cache %s does not hold %d float32 rows; encoding again", path, n)
        return None
    return emb


def _write_cache(path: Path, key: str, emb: np.ndarray) -> None:
    """Store embeddings; a cache folder that cannot be written costs the cache, never the result."""
    try:
        write_keyed_arrays(path, key, embeddings=emb)
    except OSError as exc:
        logger.warning("could not write the embedding cache %s (%s); the embeddings are returned uncached. "
                       "Set XLIR_CACHE_DIR to a writable folder to keep them.", path, exc)


# ------------------------------------------------------------------------------ encode
def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """The concrete precision ("fp32", "bf16" or "bf16-autocast") that ``precision`` means on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if not environment.native_bf16(device):
        return "fp32"
    return "bf16" if torch.device(device).type == "cuda" else "bf16-autocast"


_BF16_COPIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _bf16_copy(model, fingerprint: str):
    """A bfloat16 copy of ``model`` (cached per model object, rebuilt when its fingerprint changes)."""
    hit = _BF16_COPIES.get(model)
    if hit is not None and hit[0] == fingerprint:
        return hit[1]
    _BF16_COPIES.pop(model, None)
    memo = {id(p): torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)
            for p in model.parameters() if p.is_floating_point()}
    clone = copy.deepcopy(model, memo).to(torch.bfloat16).eval()
    _BF16_COPIES[model] = (fingerprint, clone)
    return clone


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _prompt_length(model, prefix: str) -> int | None:
    """ST's prompt_length (tokens of the prompt minus the trailing special token), if a
    Pooling module excludes the prompt."""
    if not prefix or not any(getattr(m, "include_prompt", True) is False for m in model):
        return None
    ids = model.tokenizer([prefix], add_special_tokens=True)["input_ids"][0]
    return len(ids) - 1


def padded_width(length: int, max_len: int, bucket: int = BUCKET_TOKENS) -> int:
    """The width a text of ``length`` tokens is padded to: the next multiple of ``bucket``, at most
    ``max_len`` (a text is never longer than ``max_len``: it was truncated)."""
    return int(min(max(-(-int(length) // bucket) * bucket, bucket), max(int(max_len), int(length))))


def token_batches(lengths: Sequence[int], batch_tokens: int, max_len: int | None = None,
                  bucket: int = BUCKET_TOKENS) -> list[np.ndarray]:
    """Indices grouped into batches of one padded width each (:func:`padded_width`), widest first
    and in input order within a width, each batch's padded size (rows x width) within
    ``batch_tokens`` (a single wider row is its own batch)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    cap = int(max_len) if max_len is not None else int(lengths.max(initial=0))
    widths = np.fromiter((padded_width(n, cap, bucket) for n in lengths), np.int64, len(lengths))
    order = np.lexsort((np.arange(len(widths)), -widths))
    batches, i = [], 0
    while i < len(order):
        width = int(widths[order[i]])
        rows = max(1, batch_tokens // width)
        end = i + int(np.searchsorted(-widths[order[i:]], -width, side="right"))
        for start in range(i, end, rows):
            batches.append(order[start : min(start + rows, end)])
        i = end
    return batches


def _features(enc, lengths, idx, pad_id, device, max_len: int) -> dict[str, torch.Tensor]:
    """The input ids and attention mask of one batch, padded to the batch's bucket width."""
    width = padded_width(int(lengths[idx].max()), max_len)
    ids = np.full((len(idx), width), pad_id, np.int64)
    mask = np.zeros((len(idx), width), np.int64)
    for r, j in enumerate(idx):
        ids[r, : lengths[j]] = enc[j]
        mask[r, : lengths[j]] = 1
    return {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}


def encode(
    model,
    texts: Sequence[str],
    kind: str = "query",
    *,
    batch_tokens: int = 8192,
    max_seq_length: int | None = None,
    cache: bool = True,
    cache_key_extra: str = "",
    show_progress: bool = True,
    precision: str = DEFAULT_PRECISION,
    shared_layers: int = 0,
) -> np.ndarray:
    """Embed ``texts`` as ``kind`` ("query" or "passage"): float32, L2-normalised rows, in input order
    (notebooks 02-05 through :mod:`xlir_utils.systems`).

    The model's prompt for ``kind`` is prepended, texts are tokenised once, padded to a width
    bucket (:func:`padded_width`) and run with texts of the same bucket in batches of at most
    ``batch_tokens`` padded tokens, so a text's embedding does not depend on the other texts. Results are cached on disk, keyed by
    the model's fingerprint, the texts, the prompt, the maximum length, the precision, the batch
    budget and ``cache_key_extra``; a cached file is verified before it is used.

    Args:
        model: a ``SentenceTransformer`` (``load_encoder``), with ``prompts["query"]`` /
            ``prompts["passage"]`` where the model expects a prefix.
        texts: the texts to embed (a sequence of strings, not one string).
        kind: ``"query"`` or ``"passage"``: which prompt is prepended.
        batch_tokens: padded tokens per forward pass (on CPU capped at :data:`CPU_BATCH_TOKENS`).
        max_seq_length: truncation length in tokens (default: the model's, else 512).
        cache: read and write the on-disk cache (``paths.cache_dir()/embeddings/``).
        cache_key_extra: anything else the embeddings depend on that the model does not show
            (a routing set-up, the candidate text), added to the cache key.
        show_progress: a progress bar while encoding.
        precision: one of :data:`PRECISIONS`. ``"fp32"`` is exact; ``"auto"`` picks bfloat16 where
            the hardware runs it natively and faster (cosine to fp32 > 0.9999 on XQuAD-R).
        shared_layers: k > 0 computes the embedding block and the lowest k layers once for these
            texts and shares them with every model whose prefix has the same weights
            (:mod:`.prefix`; the same numbers as without sharing).

    Returns:
        A ``(len(texts), dim)`` float32 array of L2-normalised rows (dot product = cosine).

    Example::

        from xlir_utils.encoders import encode, load_encoder

        model = load_encoder("e5-small-offline", device="cpu")
        q = encode(model, ["Wo liegt Berlin?"], "query")
        p = encode(model, ["Berlin ist die Hauptstadt Deutschlands.", "Paris liegt an der Seine."],
                   "passage")
        scores = q @ p.T  # (1, 2) cosine similarities; the first passage scores higher
    """
    if kind not in TEXT_KINDS:
        raise ValueError(f"kind must be one of {TEXT_KINDS}, got {kind!r}")
    device = _model_device(model)
    precision = resolve_precision(precision, device)
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must all be strings")
    prompts = getattr(model, "prompts", None) or {}
    prefix = prompts.get(kind, "")
    max_len = int(max_seq_length or model.max_seq_length or 512)
    if not texts:
        dim_fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return np.zeros((0, dim_fn() or 0), np.float32)

    if device.type == "cpu":
        batch_tokens = min(batch_tokens, CPU_BATCH_TOKENS)
    key = path = fingerprint = None
    if cache:
        fingerprint = model_fingerprint(model)
        key = cache_key(fingerprint, texts, prefix, max_len, precision, batch_tokens, cache_key_extra)
        path = cache_path(key)
        hit = _read_cache(path, key, len(texts))
        if hit is not None:
            return hit

    runner = model
    if precision == "bf16":
        runner = _bf16_copy(model, fingerprint or model_fingerprint(model))
    emb = _encode_uncached(runner, texts, prefix, max_len, batch_tokens, precision, show_progress,
                           shared_layers if runner is model else 0)
    if cache:
        _write_cache(path, key, emb)
    return emb


def _encode_uncached(model, texts, prefix, max_len, batch_tokens, precision, show_progress,
                     shared_layers: int = 0) -> np.ndarray:
    apply_threads()
    tok = model.tokenizer
    device = _model_device(model)
    enc = tok([prefix + t for t in texts], add_special_tokens=True, truncation=True, max_length=max_len,
              padding=False, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    lengths = np.fromiter((len(e) for e in enc), np.int64, len(enc))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    prompt_length = _prompt_length(model, prefix)
    out = None
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=precision == "bf16-autocast")
    batches = token_batches(lengths, batch_tokens, max_len)
    k = shared_layers if shared_layers and prefix_mod.shareable(model, shared_layers) else 0
    needed = 0
    if k:  # states that would not fit the store are not shared: a plain pass, batch by batch
        widths = [(padded_width(int(lengths[idx].max()), max_len), len(idx)) for idx in batches]
        needed = prefix_mod.states_bytes(widths, model[0].auto_model.config.hidden_size)
        k = k if needed <= prefix_mod.budget_bytes() else 0
    stored = fresh = None  # the states of an earlier model, or the ones this pass writes for the next
    if k:
        store_key = (prefix_mod.prefix_fingerprint(model, k), text_digest(texts), prefix, max_len, precision,
                     batch_tokens, str(device))
        stored = prefix_mod.cached_states(store_key)
        if stored is None:  # the shared lower layers, computed once for these texts, batch by batch
            fresh = prefix_mod.new_states(device, needed)
            if fresh is not None:  # room for them, before they are computed
                prefix_mod.make_room(needed)
    try:
        with torch.inference_mode(), autocast, tqdm(
            total=len(texts), desc=f"encoding {len(texts)} texts", unit="text", disable=not show_progress
        ) as bar:
            for b, idx in enumerate(batches):
                features = _features(enc, lengths, idx, pad_id, device, max_len)
                if k and stored is not None:
                    try:
                        hidden = stored[b].to(device)
                    except OSError as exc:  # an unreadable file: the rest of the pass computes them
                        prefix_mod.forget(store_key, exc)
                        stored = None
                if k and stored is None:
                    with prefix_mod.lower_layers_only(model, k):
                        hidden = model[0].auto_model(**features).last_hidden_state
                    fresh = prefix_mod.spill(fresh, hidden)
                if prompt_length is not None:
                    features["prompt_length"] = prompt_length
                if k:
                    with prefix_mod.upper_layers_from(model, k, hidden):
                        vec = model(features)["sentence_embedding"].float()
                else:
                    vec = model(features)["sentence_embedding"].float()
                vec = torch.nn.functional.normalize(vec, p=2, dim=-1).cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), vec.shape[1]), np.float32)
                out[idx] = vec
                bar.update(len(idx))
        if fresh is not None:
            prefix_mod.store_states(store_key, fresh)
            fresh = None
    finally:
        if fresh is not None:  # interrupted: the partial states are not kept
            fresh.close()
        if was_training:
            model.train()
    return out
