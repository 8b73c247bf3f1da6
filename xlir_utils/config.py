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
from dataclasses import dataclass

from .errors import SettingsError

PROFILES = ("smoke", "quick", "paper")
SAMPLINGS = ("X-X", "X-Y", "hybrid")  # the batch sampling strategies of notebook 02
XQUAD_R_LANGS = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
MLQA_R_LANGS = ("ar", "de", "en", "es", "hi", "vi", "zh")
PAPER_TRAIN_LANGS = ("en", "ar", "zh", "de", "es", "ru", "hi")  # the paper's mMARCO languages
TATOEBA_XTREME_R_LANGS = (  # XTREME-R's 41 Tatoeba languages (their files: xlir_utils/data/tatoeba_files.py)
    "af", "ar", "az", "bg", "bn", "de", "el", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id", "it", "ja",
    "jv", "ka", "kk", "ko", "lt", "ml", "mr", "nl", "pl", "pt", "ro", "ru", "sw", "ta", "te", "th", "tl", "tr", "uk",
    "ur", "vi", "zh")


@dataclass(frozen=True)
class TrainConfig:
    """Contrastive fine-tuning (notebook 02). The paper: AdamW, lr 3e-5, wd 0.01, batch 100."""

    steps: int
    batch_size: int
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # schedule "linear": warm-up share, then linear decay to 0
    alpha: float = 0.5  # probability of an X-X batch in hybrid sampling
    temperature: float = 0.05  # InfoNCE temperature (deviation: the paper prints none)
    max_seq_length: int = 128
    freeze_word_embeddings: bool = True
    checkpoint_every: int = 50
    alpha_sweep: tuple[float, ...] = ()  # hybrid alphas of the sweep (0, alpha and 1 are the main runs)
    precision: str = "auto"  # "auto": bf16 autocast where native and faster (fp32 master weights and loss); "fp32": exact
    freeze_layers: int = 0  # k > 0: the embedding block and the lowest k transformer layers stay frozen
    schedule: str = "linear"  # "linear" (warm-up, decay to 0) or "constant" (warm-up, then constant)
    warmup_steps: int = 10  # schedule "constant": linear warm-up steps
    chunk_rows: int = 8  # a batch side runs in length-sorted chunks of this many rows (0: one padded batch); dropout draws per chunk, so a recipe setting


@dataclass(frozen=True)
class AdapterConfig:
    """MAD-X style language adapters and the adapter variants (notebook 03). The variants train
    with ``Profile.train`` (same recipe and steps as full fine-tuning) at ``task_lr`` or ``joint_lr``
    (:func:`~xlir_utils.language_adapters.variant_lr`)."""

    languages: tuple[str, ...]
    mlm_steps: int  # per language adapter
    mlm_batch_size: int
    mlm_max_seq_length: int = 64
    max_texts_per_language: int | None = None
    heldout_fraction: float = 0.1  # of each language's MLM text, to measure held-out MLM loss
    reduction_factor: int = 2  # language adapter bottleneck (MAD-X default for lang adapters)
    task_reduction_factor: int = 16
    task_lr: float = 1e-3  # the task adapter's learning rate under the retrieval loss (notebook 03 §4 chooses it on dev)
    joint_lr: float | None = None  # joint-per-side's (task and language adapters'); None: task_lr
    lr_grid: tuple[float, ...] = ()  # the rates notebook 03 §4 tries on mlqa-r-dev (one seed); (): keep task_lr
    mlm_lr: float = 1e-3
    head_lr: float = 1e-3  # the shared MLM head, trained on cached states of the frozen encoder
    head_batch: int = 512
    head_max_epochs: int = 30
    head_screen_epochs: int | None = None  # every candidate head trains this many epochs; the best continues to head_max_epochs (None: all train the full budget)
    head_patience: int = 2
    head_max_positions: int | None = 60_000  # masked positions a head trains on (a seeded sample)
    head_maskings: int = 3  # times each text is masked for the heads offered more text (notebook 03 §3)
    head_max_seconds: float | None = None  # wall-clock budget of one candidate head's epochs (the head then depends on the machine's speed)
    head_study_texts: int | None = None  # texts per language and source the head study encodes (a seeded sample; None: all)
    matrix_texts: int | None = None  # held-out texts per language in the adapter-by-language matrix (None: all)
    joint_from_mlm: bool = True  # joint-per-side starts from the MLM adapters (else from scratch)
    variants: tuple[str, ...] = ("task-only", "mlm-per-side", "joint-per-side", "shared-control", "english")
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
    seeds: tuple[int, ...] = (13,)  # training seeds of every run (XLIR_SEEDS=13,14 overrides)
    tatoeba_languages: tuple[str, ...] = ()  # Tatoeba languages evaluated (notebook 04); () = none
    tatoeba_pairs: int | None = None  # pairs per language (None: all, up to 1,000)
    large_scale: tuple[str, ...] = ()  # "mewsli-x", "miracl": the suites that need the hub (paper)
    miracl_languages: tuple[str, ...] = ()  # () = MIRACL's 16 original languages
    dev_fraction: float | None = None  # held-out share of the LAReQA training set's articles (mlqa-r-dev)
    train_queries: int = 20_000  # mMARCO: training queries subsampled (each in every train language)
    hard_negatives: bool = False  # add the data's hard negatives (mMARCO: BM25) to the in-batch ones
    erasure_fit_per_language: int = 150  # NTREX-128 sentences per language the held-out erasers fit on (notebook 05 §5)
    lexicon_languages: tuple | None = None  # English-X lexicons notebook 01 §6 builds (None: every XQuAD-R language)
    # and code-switching (notebook 02 §7) uses, of the training languages
    code_switching_p: tuple = (0.25, 0.5, 0.75)  # word probabilities the code-switching dev study tries (notebook 02 §7)
    code_switching_sides: tuple = ("query", "passage", "both")  # sides it tries (notebook 02 §7)
    figure_formats: tuple[str, ...] = ("png", "pdf")  # what outputs.save_figure writes (smoke: PNG only)
    eval_questions: int | None = None  # None: every question of an evaluation set; else its first N (smoke)

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (``train=`` may be a dict of TrainConfig fields);
        an unknown field raises :class:`~xlir_utils.errors.SettingsError` naming the known ones."""
        _check_fields(Profile, changes, "Profile")
        for name, cls in (("train", TrainConfig), ("adapters", AdapterConfig)):
            if isinstance(changes.get(name), dict):
                _check_fields(cls, changes[name], f"{name} ({cls.__name__})")
                changes[name] = dataclasses.replace(getattr(self, name), **changes[name])
        return dataclasses.replace(self, **changes)


def _check_fields(cls, changes: dict, what: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise SettingsError(f"{what} has no field {', '.join(map(repr, unknown))}; its fields are "
                            f"{', '.join(known)}.")


def _smoke() -> Profile:
    return Profile(
        name="smoke",
        seed=13,
        encoder="e5-small-offline",
        baselines=("e5-small-offline",),
        train_dataset="mlqa-r",
        train_languages=MLQA_R_LANGS,
        eval_datasets=("xquad-r", "mlqa-r", "mlqa-r-dev"),
        eval_articles=1,
        eval_questions=30,  # of the article's 74 XQuAD-R questions, in every language: the pool stays whole
        train_articles=3,  # one of them held out as mlqa-r-dev
        candidate_text="sentence",
        encode_batch_tokens=4096,
        train=TrainConfig(steps=4, batch_size=8, max_seq_length=48, checkpoint_every=2, schedule="constant",
                          warmup_steps=1, freeze_layers=6, alpha_sweep=(0.0, 0.25, 0.5, 1.0)),
        adapters=AdapterConfig(
            languages=XQUAD_R_LANGS, mlm_steps=2, mlm_batch_size=8, max_texts_per_language=64,
            head_max_epochs=2, head_screen_epochs=1, head_maskings=2,  # (a smoke head cannot learn; the paths run)
            head_study_texts=20, matrix_texts=5, lr_grid=(1e-3, 3e-3),
        ),
        bootstrap_samples=100,
        seeds=(13,),  # one seed keeps CI fast; the seed statistics over several seeds are unit-tested
        dev_fraction=0.15,
        tatoeba_languages=("de", "th"),
        tatoeba_pairs=60,
        erasure_fit_per_language=10,
        lexicon_languages=("ar", "es", "hi"),  # the languages of smoke's training questions besides English
        code_switching_p=(0.5,),
        code_switching_sides=("both",),
        figure_formats=("png",),  # scratch figures: a PDF adds about 40 % to each save
    )


def _quick() -> Profile:
    return Profile(
        name="quick",
        seed=13,
        encoder="e5-small-offline",
        baselines=("e5-small-offline",),
        train_dataset="mlqa-r",
        train_languages=MLQA_R_LANGS,
        eval_datasets=("xquad-r", "mlqa-r", "mlqa-r-dev"),
        eval_articles=None,
        train_articles=None,
        candidate_text="sentence",
        encode_batch_tokens=8192,
        # the recipe: chosen on mlqa-r-dev by the recipe study (make recipe-study; results/recipe_*)
        train=TrainConfig(steps=100, batch_size=32, lr=3e-05, temperature=0.02, max_seq_length=128,
                          freeze_layers=6, schedule="constant", warmup_steps=10, checkpoint_every=25,
                          alpha_sweep=(0.0, 0.25, 0.5, 0.75, 1.0)),
        adapters=AdapterConfig(
            languages=XQUAD_R_LANGS, mlm_steps=100, mlm_batch_size=16, mlm_max_seq_length=64,
            max_texts_per_language=3000, mlm_lr=1e-3, task_lr=1e-3,
            # each candidate MLM head: 60k positions, at most 6 epochs, lr 2e-3 (a 600-texts-per-language
            # probe stopped improving after 4 epochs at 2e-3 and was still falling after 8 at 1e-3)
            head_lr=2e-3, head_maskings=1, head_max_positions=60_000, head_max_epochs=6,
            # the study encodes 500 texts per language and source (the encoder pass is most of its
            # cost: ~75 texts/s on 2 cores); the matrix scores 100 held-out texts per cell
            head_study_texts=500, matrix_texts=100, lr_grid=(3e-4, 1e-3, 3e-3),
        ),
        seeds=(13, 14, 15),
        dev_fraction=0.15,
        tatoeba_languages=("ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh"),
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
            mlm_max_seq_length=128, task_lr=1e-4, use_hub_adapters=True,
        ),
        train_queries=100_000,  # x 7 languages; 5,000 steps of 100 use each query ~5 times
        tatoeba_languages=TATOEBA_XTREME_R_LANGS,  # XTREME-R's 41 (online)
        large_scale=("mewsli-x", "miracl"),
    )


_BUILDERS = {"smoke": _smoke, "quick": _quick, "paper": _paper}


def profile_name(name: str | None = None) -> str:
    """Resolve a profile name: the argument, else ``XLIR_PROFILE``, else ``quick``."""
    name = (name or os.environ.get("XLIR_PROFILE") or "quick").strip().lower()
    if name not in _BUILDERS:
        raise SettingsError(
            f"Unknown profile {name!r} (from XLIR_PROFILE or the argument). "
            f"Choose one of {', '.join(PROFILES)}: e.g. `export XLIR_PROFILE=quick`."
        )
    return name


def seeds_from_env(default: tuple[int, ...]) -> tuple[int, ...]:
    """``XLIR_SEEDS`` (comma-separated integers, e.g. ``13`` for the single-seed path) or ``default``."""
    raw = os.environ.get("XLIR_SEEDS", "").strip()
    if not raw:
        return default
    try:
        seeds = tuple(int(x) for x in raw.split(","))
    except ValueError:
        seeds = ()
    if not seeds or any(x < 0 for x in seeds) or len(set(seeds)) != len(seeds):
        raise SettingsError(f"XLIR_SEEDS={raw!r} is not a comma-separated list of distinct non-negative integers "
                         "(e.g. XLIR_SEEDS=13 for one seed, 13,14,15 for three).")
    return seeds


def load(name: str | None = None) -> Profile:
    """The frozen :class:`Profile` for ``name`` (default: ``XLIR_PROFILE`` or ``quick``); notebooks
    01-05 call it in their second code cell."""
    profile = _BUILDERS[profile_name(name)]()
    return profile.replace(seeds=seeds_from_env(profile.seeds))
