"""Profiles: one switch (``XLIR_PROFILE``) picks the whole experimental set-up.

* ``smoke``: CI. Tiny slices of the real data and the real offline encoder; minutes.
* ``quick`` (default): a 2-core CPU laptop, offline. Cross-dataset zero-shot protocol:
  train on MLQA-R, evaluate on XQuAD-R (never seen in training).
* ``paper``: a GPU with internet. XLM-R base / LaBSE from the hub, full data.

Every notebook's first cell reads the profile name; the second calls :func:`load`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

PROFILES = ("smoke", "quick", "paper")
XQUAD_R_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
MLQA_R_LANGS = ("ar", "de", "en", "es", "hi", "vi", "zh")
PAPER_TRAIN_LANGS = ("en", "ar", "zh", "de", "es", "ru", "hi")  # the paper's mMARCO languages


@dataclass(frozen=True)
class TrainConfig:
    """Contrastive fine-tuning (notebook 02). The paper: AdamW, lr 3e-5, wd 0.01, batch 100."""

    steps: int
    batch_size: int
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    alpha: float = 0.5  # probability of a monolingual (X-X) batch in hybrid sampling
    temperature: float = 0.05  # InfoNCE temperature (deviation: the paper prints none)
    max_seq_length: int = 128
    freeze_word_embeddings: bool = True
    checkpoint_every: int = 50
    alpha_sweep: tuple[float, ...] = ()  # extra hybrid runs for the alpha sweep


@dataclass(frozen=True)
class AdapterConfig:
    """MAD-X style language adapters + task adapter (notebook 03)."""

    languages: tuple[str, ...]
    mlm_steps: int  # per language adapter
    mlm_batch_size: int
    mlm_max_seq_length: int = 64
    max_texts_per_language: int | None = None
    reduction_factor: int = 2  # language adapter bottleneck (MAD-X default for lang adapters)
    task_reduction_factor: int = 16
    task_steps: int = 100
    task_lr: float = 1e-4
    mlm_lr: float = 1e-4
    mlm_head_steps: int = 0  # the shared MLM head e5-small lacks (0: as many as mlm_steps)
    mlm_head_lr: float = 1e-3  # the shared MLM head
    use_hub_adapters: bool = False  # paper: AdapterHub's MAD-X adapters for xlm-roberta-base


@dataclass(frozen=True)
class Profile:
    """Everything a notebook needs to know about the run it is part of."""

    name: str
    seed: int
    encoder: str  # base model name for load_encoder
    baselines: tuple[str, ...]  # zero-shot models evaluated in notebook 04
    train_dataset: str  # "mlqa-r" (smoke, quick), "xquad-r" (reverse fold) or "mmarco" (paper)
    train_languages: tuple[str, ...]
    eval_datasets: tuple[str, ...]
    eval_articles: int | None  # None: every article; else the first N articles, in the English file's order
    train_articles: int | None
    candidate_text: str  # "sentence" or "sentence+context"
    encode_batch_tokens: int
    train: TrainConfig
    adapters: AdapterConfig
    bootstrap_samples: int = 1000
    train_queries: int = 20_000  # mMARCO: training queries subsampled (each in every train language)
    hard_negatives: bool = False  # add the data's hard negatives (mMARCO: BM25) to the in-batch ones
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (``train=`` may be a dict of TrainConfig fields)."""
        if isinstance(changes.get("train"), dict):
            changes["train"] = dataclasses.replace(self.train, **changes["train"])
        if isinstance(changes.get("adapters"), dict):
            changes["adapters"] = dataclasses.replace(self.adapters, **changes["adapters"])
        return dataclasses.replace(self, **changes)


def _smoke() -> Profile:
    return Profile(
        name="smoke",
        seed=13,
        encoder="e5-small-offline",
        baselines=("e5-small-offline",),
        train_dataset="mlqa-r",
        train_languages=MLQA_R_LANGS,
        eval_datasets=("xquad-r",),
        eval_articles=1,
        train_articles=2,
        candidate_text="sentence",
        encode_batch_tokens=4096,
        train=TrainConfig(steps=4, batch_size=8, max_seq_length=48, checkpoint_every=2),
        adapters=AdapterConfig(
            languages=XQUAD_R_LANGS, mlm_steps=2, mlm_batch_size=8,
            max_texts_per_language=64, task_steps=3,
        ),
        bootstrap_samples=100,
    )


def _quick() -> Profile:
    return Profile(
        name="quick",
        seed=13,
        encoder="e5-small-offline",
        baselines=("e5-small-offline",),
        train_dataset="mlqa-r",
        train_languages=MLQA_R_LANGS,
        eval_datasets=("xquad-r",),
        eval_articles=None,
        train_articles=None,
        candidate_text="sentence",
        encode_batch_tokens=8192,
        train=TrainConfig(steps=60, batch_size=32, max_seq_length=96, checkpoint_every=20),
        adapters=AdapterConfig(
            languages=XQUAD_R_LANGS, mlm_steps=25, mlm_batch_size=16, mlm_max_seq_length=48,
            max_texts_per_language=4000, mlm_lr=1e-3, mlm_head_steps=44, task_steps=60, task_lr=1e-4,
        ),
    )


def _paper() -> Profile:
    return Profile(
        name="paper",
        seed=13,
        encoder="xlm-roberta-base",
        baselines=("xlm-roberta-base", "sentence-transformers/LaBSE", "e5-small-offline"),
        # mMARCO, the public part of the paper's training data, in the paper's seven languages
        # (el, th, tr, vi never trained on); XQuAD-R and MLQA-R are then both zero-shot.
        train_dataset="mmarco",
        train_languages=PAPER_TRAIN_LANGS,
        eval_datasets=("xquad-r", "mlqa-r"),
        eval_articles=None,
        train_articles=None,
        candidate_text="sentence",
        encode_batch_tokens=65536,
        train=TrainConfig(
            steps=5000, batch_size=100, max_seq_length=256, freeze_word_embeddings=False,
            checkpoint_every=500, alpha_sweep=(0.0, 0.25, 0.5, 0.75, 1.0),
        ),
        adapters=AdapterConfig(
            languages=XQUAD_R_LANGS, mlm_steps=2000, mlm_batch_size=32,
            mlm_max_seq_length=128, task_steps=5000, use_hub_adapters=True,
        ),
        train_queries=100_000,  # x 7 languages; 5,000 steps of 100 use each query ~5 times
    )


_BUILDERS = {"smoke": _smoke, "quick": _quick, "paper": _paper}


def profile_name(name: str | None = None) -> str:
    """Resolve a profile name: the argument, else ``XLIR_PROFILE``, else ``quick``."""
    name = (name or os.environ.get("XLIR_PROFILE") or "quick").strip().lower()
    if name not in _BUILDERS:
        raise ValueError(
            f"Unknown profile {name!r} (from XLIR_PROFILE or the argument). "
            f"Choose one of {', '.join(PROFILES)}: e.g. `export XLIR_PROFILE=quick`."
        )
    return name


def load(name: str | None = None) -> Profile:
    """The frozen :class:`Profile` for ``name`` (default: ``XLIR_PROFILE`` or ``quick``); notebooks
    01-05 call it in their second code cell."""
    return _BUILDERS[profile_name(name)]()
