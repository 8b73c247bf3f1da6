"""MAD-X style language adapters and a shared task adapter for a bi-encoder (notebook 03).

**MAD-X** (Pfeiffer et al. 2020): one *language adapter* per language (an invertible
bottleneck, ``seq_bn_inv``) is trained with masked-language modelling (MLM) on monolingual
text and then frozen; a *task adapter* (``seq_bn``) is trained on top of it
(``Stack(lang, "task")``); at test time the target language's adapter is swapped in.

**In a bi-encoder** each side is routed through the adapter of *its own* language: the
query through ``Stack(la_<lang(q)>, "task")``, the passage through
``Stack(la_<lang(p)>, "task")``. The rows of one side are grouped by their adapter set-up
and every group runs its own forward pass inside ``AdapterSetup(...)``; the outputs are put
back into the original row order. (Measured in ``shared/docs/offline-model.md``: this is
exact, whereas ``Stack(BatchSplit(a, b), "task")`` applies the first language's invertible
adapter to every row, and ``BatchSplit(Stack(..), Stack(..))`` is wrong.)

Variants (``VARIANTS``; run folders ``runs/<profile>/adapters-<variant>``), same data,
sampler (hybrid batches), seed and step budget:

============  ======================  ======================  ====================
variant       query side              passage side            trained
============  ======================  ======================  ====================
per-side      la_<lang(q)> + task     la_<lang(p)> + task     task adapter
task-only     task                    task                    task adapter
english       la_en + task            la_en + task            task adapter
============  ======================  ======================  ====================

The reference, full fine-tuning with hybrid batches, is notebook 02's ``full-hybrid``.

**The MLM head.** multilingual-e5-small (and LaBSE) ship without an MLM head, so one is
added: dense + GELU + LayerNorm, then a decoder *tied to the frozen word embeddings* plus a
bias (:class:`MLMHead`; as in BERT/XLM-R). In MAD-X the head is part of the pre-trained
model and stays frozen; here it does not exist, so a **shared head is trained first**, on
mixed-language text with the base model frozen and no adapter active
(:func:`train_mlm_head`), and then **frozen** while each language adapter is trained. A
language adapter is therefore the only thing that changes in its MLM phase; its
invertible adapter is applied forwards on the input embeddings and inverted
(``rev=True``) before the tied decoder, as in AdapterHub's MLM heads.

**Text for MLM** (:func:`mlm_texts`): NTREX-128 + Tatoeba (:func:`xlir_utils.data.monolingual_text`)
plus the training set's own sentences of that language (MLQA-R candidates), minus any text
that occurs in an evaluation set. Languages never trained on (el, ru, th, tr under
``quick``) still get their own language adapter.

Calls for the evaluation notebook (04)::

    from xlir_utils import language_adapters as la

    for run_dir in la.variant_run_dirs(cfg.name):   # runs/<profile>/adapters-{per-side,task-only,english}
        model, routing = la.load_variant(run_dir)   # base encoder + load_adapter; own adapter per language
        routings = [routing]
        if routing.variant == "per-side":           # never-seen languages through the English adapter
            routings.append(routing.with_unseen("en"))
        for r in routings:                          # r.label: per-side | per-side/unseen-en | task-only | english
            q = la.encode_routed(model, queries.text.tolist(), queries.lang.tolist(), "query", r)
            c = la.encode_routed(model, candidate_texts, candidates.lang.tolist(), "passage", r)
            # q, c: float32 numpy, L2-normalised, rows in input order -> score q @ c.T as for any model

``encode_routed`` groups the rows by adapter set-up and calls
``xlir_utils.encoders.encode(model, group, kind, cache_key_extra=f"{routing.tag}:{set-up}")``
inside ``AdapterSetup(set-up)`` for each group (extra keyword arguments such as
``batch_tokens`` are passed on); ``routing.tag`` is the run's digest and the set-up names the
adapters, so cached embeddings never mix set-ups or runs (two routings of one run share the
groups they route alike). Every language to encode needs its own adapter
in a per-side run (all 11 XQuAD-R languages under quick); an unknown language raises.

Traps handled here (``shared/docs/style.md``): ``train_adapter("task")`` resets the active
set-up, so it is called first and the routing is applied per forward pass;
``SentenceTransformer(folder)`` drops adapter weights, so adapters are saved and loaded
with ``save_adapter``/``load_adapter`` only.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import paths
from .config import Profile
from .encoders import load_encoder
from .io_utils import atomic_replace_dir, atomic_write_csv, atomic_write_json, atomic_write_torch, json_digest
from .training import _lr_lambda, finished_record

TASK = "task"
LANG_CONFIG = "seq_bn_inv"  # MAD-X language adapter: Pfeiffer bottleneck + invertible adapter
TASK_CONFIG = "seq_bn"
VARIANTS = ("per-side", "task-only", "english")
HEAD_DIR = "_mlm_head"
FORMAT_VERSION = 1
MANIFEST = "xlir_adapters.json"
HUB_ADAPTERS = "{lang}/wiki@ukp"  # AdapterHub's MAD-X language adapters (xlm-roberta-base)


def lang_adapter_name(lang: str) -> str:
    """Adapter name of a language (``la_de``)."""
    return f"la_{lang}"


def run_name(variant: str) -> str:
    """Run folder name of a variant: ``adapters-per-side``, ``adapters-task-only``, ``adapters-english``."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown adapter variant {variant!r}; choose one of {VARIANTS}.")
    return f"adapters-{variant}"


def language_adapters_dir(profile: str) -> Path:
    """Where the language adapters of a profile live: ``runs/<profile>/language-adapters/``."""
    return paths.runs_dir(profile) / "language-adapters"


def variant_run_dirs(profile: str) -> list[Path]:
    """The finished adapter runs of a profile (``runs/<profile>/adapters-*`` with a manifest)."""
    root = paths.runs_dir(profile)
    return [root / run_name(v) for v in VARIANTS if (root / run_name(v) / "model" / MANIFEST).is_file()]


# ----------------------------------------------------------------- model plumbing
def base_model(model):
    """The transformers model inside a SentenceTransformer, with AdapterHub support added once."""
    import adapters

    auto = model[0].auto_model
    if not hasattr(auto, "adapters_config"):
        adapters.init(auto)
    return auto


def _lang_adapter_config(reduction_factor: int):
    from adapters import SeqBnInvConfig

    return SeqBnInvConfig(reduction_factor=reduction_factor)


def _task_adapter_config(reduction_factor: int):
    from adapters import SeqBnConfig

    return SeqBnConfig(reduction_factor=reduction_factor)


def trainable_names(model) -> set[str]:
    """Names of the parameters that require gradients."""
    return {n for n, p in model.named_parameters() if p.requires_grad}


# ----------------------------------------------------------------- the MLM head
class MLMHead(nn.Module):
    """BERT-style MLM head: dense + GELU + LayerNorm, decoder tied to the word embeddings, bias.

    The decoder weight *is* the encoder's (frozen) word-embedding matrix; it is held
    outside the module's parameters, so ``state_dict()`` holds only the small head.
    """

    def __init__(self, word_embeddings: nn.Embedding, layer_norm_eps: float = 1e-12):
        super().__init__()
        vocab, hidden = word_embeddings.weight.shape
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.layer_norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self._tied = [word_embeddings]  # a list: not registered as a sub-module
        self.digest = ""  # the recipe digest of a trained head (train_mlm_head)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.act(self.dense(hidden)))

    def decode(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self._tied[0].weight.T + self.bias


def new_mlm_head(model) -> MLMHead:
    auto = model[0].auto_model
    eps = getattr(auto.config, "layer_norm_eps", 1e-12)
    return MLMHead(auto.get_input_embeddings(), eps)


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, prob: float = 0.15):
    """BERT masking: ``prob`` of the real tokens are predicted (80% <mask>, 10% random, 10% kept).

    Returns (masked input ids, labels with -100 where nothing is predicted). At least one
    token per batch is predicted.
    """
    labels = input_ids.clone()
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special_mask
    if not chosen.any():
        cand = (~special_mask).nonzero()
        chosen[tuple(cand[torch.randint(len(cand), (1,), generator=generator)][0])] = True
    labels[~chosen] = -100
    ids = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=generator)
    ids[chosen & (r < 0.8)] = mask_id
    rand = chosen & (r >= 0.8) & (r < 0.9)
    ids[rand] = torch.randint(vocab_size, input_ids.shape, generator=generator)[rand]
    return ids, labels


def mlm_loss(model, head: MLMHead, texts: Sequence[str], max_seq_length: int,
             generator: torch.Generator) -> torch.Tensor:
    """MLM loss of ``texts`` through the active adapter set-up (inverse invertible adapter before decoding)."""
    auto = model[0].auto_model
    tok = model.tokenizer
    enc = tok(list(texts), padding=True, truncation=True, max_length=max_seq_length, return_tensors="pt",
              return_special_tokens_mask=True)
    special = enc.pop("special_tokens_mask").bool() | ~enc["attention_mask"].bool()
    ids, labels = mask_tokens(enc["input_ids"], special, tok.mask_token_id, len(tok), generator)
    device = next(auto.parameters()).device
    out = auto(input_ids=ids.to(device), attention_mask=enc["attention_mask"].to(device))
    where = labels != -100
    hidden = head.transform(out.last_hidden_state[where.to(device)])
    if hasattr(auto, "invertible_adapters_forward"):
        hidden = auto.invertible_adapters_forward(hidden[None], rev=True)[0]  # it wants (batch, seq, dim)
    return F.cross_entropy(head.decode(hidden), labels[where].to(device))


def _batches(texts: Sequence[str], batch_size: int, steps: int, seed: int) -> list[list[str]]:
    """``steps`` batches cycling through a seeded permutation of ``texts`` (re-shuffled per pass)."""
    rng = np.random.default_rng(seed)
    out, order, pos = [], rng.permutation(len(texts)), 0
    for _ in range(steps):
        batch = []
        while len(batch) < batch_size:
            if pos == len(order):
                order, pos = rng.permutation(len(texts)), 0
            batch.append(texts[order[pos]])
            pos += 1
        out.append(batch)
    return out


def _mlm_loop(model, head, params, batches, lr, max_seq_length, seed, desc, show_progress) -> pd.DataFrame:
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(max(1, math.ceil(0.1 * steps)), steps))
    gen = torch.Generator().manual_seed(seed)
    log = []
    for step, batch in enumerate(tqdm(batches, desc=desc, disable=not show_progress, leave=False)):
        t0 = time.perf_counter()
        loss = mlm_loss(model, head, batch, max_seq_length, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sched.step()
        log.append({"step": step + 1, "loss": loss.item(), "seconds": time.perf_counter() - t0})
    return pd.DataFrame(log)


# ----------------------------------------------------------------- text for MLM
def mlm_texts(lang: str, profile: Profile, *, limit: int | None = None, eval_texts: set[str] | None = None,
              train_sentences: Sequence[str] = ()) -> list[str]:
    """Monolingual text of ``lang`` for its adapter: NTREX-128 + Tatoeba + the training set's sentences.

    Texts that occur in an evaluation set (``eval_texts``, normalised) are dropped; the
    rest is shuffled with the profile's seed and cut to ``limit``.
    """
    from .data import monolingual_text
    from .data.pairs import normalise_text

    texts = monolingual_text(lang, extra=list(train_sentences))
    if eval_texts:
        texts = [t for t in texts if normalise_text(t) not in eval_texts]
    rng = np.random.default_rng([profile.seed, sum(map(ord, lang))])
    texts = [texts[i] for i in rng.permutation(len(texts))]
    return texts[:limit] if limit else texts


def mlm_corpus(profile: Profile, languages: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The MLM text of every adapter language (training-set sentences added, evaluation text removed)."""
    from .data import read_processed
    from .data.pairs import normalise_text

    a = profile.adapters
    languages = tuple(languages or a.languages)
    train = read_processed(profile.train_dataset, profile.name, articles=profile.train_articles) \
        if profile.train_dataset in ("mlqa-r", "xquad-r") else None
    eval_texts: set[str] = set()
    for name in profile.eval_datasets:
        articles = profile.eval_articles if profile.name == "smoke" else None
        rset = read_processed(name, profile.name, articles=articles)
        eval_texts |= {normalise_text(t) for t in pd.concat([rset.queries.text, rset.candidates.sentence])}
    corpus = {}
    for lang in languages:
        extra = []
        if train is not None and lang in train.languages:
            extra = train.candidates.sentence[train.candidates.lang == lang].tolist()
        corpus[lang] = mlm_texts(lang, profile, limit=a.max_texts_per_language, eval_texts=eval_texts,
                                 train_sentences=extra)
    return corpus


# ----------------------------------------------------------------- training language adapters
def _head_steps(profile: Profile) -> int:
    return int(profile.adapters.mlm_head_steps or profile.adapters.mlm_steps)


def head_recipe(profile: Profile, corpus: dict[str, list[str]]) -> dict:
    """What determines the shared MLM head (its digest keys reuse)."""
    a = profile.adapters
    return {"format": FORMAT_VERSION, "encoder": profile.encoder, "steps": _head_steps(profile),
            "lr": profile.adapters.mlm_head_lr, "batch": a.mlm_batch_size, "max_len": a.mlm_max_seq_length,
            "seed": profile.seed, "texts": json_digest({k: v for k, v in sorted(corpus.items())})}


def adapter_recipe(profile: Profile, lang: str, texts: Sequence[str], head_digest: str,
                   steps: int | None = None) -> dict:
    """What determines a language adapter (its digest keys reuse)."""
    a = profile.adapters
    return {"format": FORMAT_VERSION, "encoder": profile.encoder, "lang": lang, "config": LANG_CONFIG,
            "reduction_factor": a.reduction_factor, "steps": a.mlm_steps if steps is None else steps,
            "lr": a.mlm_lr, "batch": a.mlm_batch_size, "max_len": a.mlm_max_seq_length, "seed": profile.seed,
            "texts": json_digest(list(texts)), "head": head_digest}


def _finished(folder: Path, digest: str) -> bool:
    return finished_record(folder, digest) is not None


def train_mlm_head(model, corpus: dict[str, list[str]], profile: Profile, folder: Path, *,
                   show_progress: bool = True) -> tuple[MLMHead, pd.DataFrame]:
    """Train (or reuse) the shared MLM head on mixed-language text; base frozen, no adapter active.

    Saved as ``folder/head.pt`` + ``mlm_log.csv`` + ``run.json``; reused when the recipe matches.
    """
    a = profile.adapters
    steps = _head_steps(profile)
    recipe = head_recipe(profile, corpus)
    digest = json_digest(recipe)
    record_path = folder / "run.json"
    if _finished(folder, digest):
        head = new_mlm_head(model)
        head.load_state_dict(torch.load(folder / "head.pt", weights_only=True))
        head.requires_grad_(False)
        head.digest = digest
        return head, pd.read_csv(folder / "mlm_log.csv")
    # every language in turn, each batch from one language (as MLM batches of a language adapter)
    langs = sorted(corpus)
    per_lang = {lang: _batches(corpus[lang], a.mlm_batch_size, steps, profile.seed) for lang in langs}
    batches = [per_lang[langs[s % len(langs)]][s // len(langs)] for s in range(steps)]
    auto = base_model(model)
    auto.requires_grad_(False)
    torch.manual_seed(profile.seed)
    head = new_mlm_head(model)
    head.train()
    auto.train()
    with _no_adapters(auto):
        log = _mlm_loop(model, head, list(head.parameters()), batches, a.mlm_head_lr, a.mlm_max_seq_length,
                        profile.seed, "MLM head", show_progress)
    log["lang"] = [langs[s % len(langs)] for s in range(steps)]
    auto.eval()
    head.eval()
    head.requires_grad_(False)
    atomic_write_torch(head.state_dict(), folder / "head.pt")
    atomic_write_csv(log, folder / "mlm_log.csv")
    atomic_write_json({"digest": digest, "recipe": recipe, "finished": True}, record_path)
    head.digest = digest
    return head, log


class _no_adapters:
    """Run the model with no adapter active (the active set-up is restored afterwards)."""

    def __init__(self, auto):
        self.auto = auto

    def __enter__(self):
        import logging

        self.saved = self.auto.active_adapters
        self.auto.active_adapters = None
        self.logger = logging.getLogger("adapters.model_mixin")  # "adapters available but none active"
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self.auto.active_adapters = self.saved
        self.logger.setLevel(self.level)


def train_language_adapter(model, head: MLMHead, lang: str, texts: Sequence[str], profile: Profile,
                           folder: Path | None = None, *, steps: int | None = None,
                           show_progress: bool = True) -> pd.DataFrame:
    """Add ``la_<lang>`` (``seq_bn_inv``) to ``model`` and train it with MLM; only its weights change.

    With ``folder``: reuse a finished adapter there with the same recipe (it is loaded with
    ``load_adapter``), else train and save it (``save_adapter`` + ``mlm_log.csv`` + ``run.json``).
    Returns the per-step log (step, loss, seconds, lang).
    """
    a = profile.adapters
    steps = a.mlm_steps if steps is None else steps
    name = lang_adapter_name(lang)
    auto = base_model(model)
    recipe = adapter_recipe(profile, lang, texts, head.digest, steps)
    digest = json_digest(recipe)
    if folder is not None and _finished(folder, digest):
        if name in auto.adapters_config:
            auto.delete_adapter(name)
        auto.load_adapter(str(folder / "adapter"), load_as=name)
        auto.adapter_to(name, next(auto.parameters()).device)
        return pd.read_csv(folder / "mlm_log.csv")
    if name in auto.adapters_config:
        auto.delete_adapter(name)
    torch.manual_seed(profile.seed)
    auto.add_adapter(name, config=_lang_adapter_config(a.reduction_factor))
    auto.train_adapter(name)  # freezes everything else; activates `name`
    head.requires_grad_(False)
    params = [p for p in auto.parameters() if p.requires_grad]
    batches = _batches(list(texts), a.mlm_batch_size, steps, profile.seed)
    log = _mlm_loop(model, head, params, batches, a.mlm_lr, a.mlm_max_seq_length,
                    profile.seed + sum(map(ord, lang)), f"MLM {lang}", show_progress)
    log["lang"] = lang
    auto.eval()
    auto.requires_grad_(False)
    auto.active_adapters = None
    if folder is not None:
        def write(tmp: Path) -> None:
            (tmp / "adapter").mkdir(parents=True)
            auto.save_adapter(str(tmp / "adapter"), name)
            atomic_write_csv(log, tmp / "mlm_log.csv")
            atomic_write_json({"digest": digest, "recipe": recipe, "finished": True,
                               "first_loss": float(log.loss.iloc[0]), "last_loss": float(log.loss.iloc[-1])},
                              tmp / "run.json")

        atomic_replace_dir(folder, write)
    return log


def load_hub_language_adapters(model, languages: Sequence[str]) -> dict[str, str]:
    """Load AdapterHub's pretrained MAD-X language adapters (``<lang>/wiki@ukp``, xlm-roberta-base).

    Needs internet access and an ``xlm-roberta-base`` encoder; fails with a clear message otherwise.
    """
    auto = base_model(model)
    base_name = getattr(auto.config, "_name_or_path", "")
    if "xlm-roberta-base" not in str(base_name):
        raise RuntimeError(f"AdapterHub's MAD-X language adapters are for xlm-roberta-base, not {base_name!r}: "
                           "set use_hub_adapters=False to train language adapters with MLM instead.")
    names = {}
    for lang in languages:
        try:
            names[lang] = auto.load_adapter(HUB_ADAPTERS.format(lang=lang), config="seq_bn_inv",
                                            load_as=lang_adapter_name(lang))
        except Exception as exc:  # noqa: BLE001 - network, hub or format errors all mean the same here
            raise RuntimeError(
                f"Could not load AdapterHub's language adapter {HUB_ADAPTERS.format(lang=lang)!r} ({exc}). "
                "It needs internet access to the Hugging Face hub. Offline, use the quick profile or "
                "cfg.replace(adapters={'use_hub_adapters': False}) to train language adapters with MLM."
            ) from exc
    return names


def train_language_adapters(profile: Profile, *, languages: Sequence[str] | None = None, model=None,
                            corpus: dict[str, list[str]] | None = None, show_progress: bool = True) -> pd.DataFrame:
    """Train (or reuse) the shared MLM head and every language adapter of the profile.

    Writes ``runs/<profile>/language-adapters/{_mlm_head,<lang>}/``; returns the MLM log of
    all languages (columns step, loss, seconds, lang, phase). With ``use_hub_adapters`` the
    pretrained AdapterHub adapters are loaded instead (online only) and the log is empty.
    """
    a = profile.adapters
    languages = tuple(languages or a.languages)
    root = language_adapters_dir(profile.name)
    if a.use_hub_adapters:
        model = model if model is not None else load_encoder(profile.encoder, profile)
        names = load_hub_language_adapters(model, languages)
        auto = base_model(model)
        for lang, name in names.items():
            (root / lang / "adapter").mkdir(parents=True, exist_ok=True)
            auto.save_adapter(str(root / lang / "adapter"), name)
            atomic_write_json({"digest": "hub", "source": HUB_ADAPTERS.format(lang=lang), "finished": True},
                              root / lang / "run.json")
        return pd.DataFrame(columns=["step", "loss", "seconds", "lang", "phase"])
    corpus = corpus if corpus is not None else mlm_corpus(profile, languages)
    corpus = {lang: corpus[lang] for lang in languages}
    head_digest = json_digest(head_recipe(profile, corpus))
    if _finished(root / HEAD_DIR, head_digest) and all(
            _finished(root / lang, json_digest(adapter_recipe(profile, lang, corpus[lang], head_digest)))
            for lang in languages):  # everything reusable: no need to load the model
        logs = [pd.read_csv(root / HEAD_DIR / "mlm_log.csv").assign(phase="head")]
        logs += [pd.read_csv(root / lang / "mlm_log.csv").assign(phase="adapter") for lang in languages]
        return pd.concat(logs, ignore_index=True)
    model = model if model is not None else load_encoder(profile.encoder, profile)
    head, head_log = train_mlm_head(model, corpus, profile, root / HEAD_DIR, show_progress=show_progress)
    logs = [head_log.assign(phase="head")]
    for lang in tqdm(languages, desc="language adapters", disable=not show_progress):
        logs.append(train_language_adapter(model, head, lang, corpus[lang], profile, root / lang,
                                           show_progress=show_progress).assign(phase="adapter"))
    return pd.concat(logs, ignore_index=True)


def plot_mlm_loss(log: pd.DataFrame, smooth: int = 5):
    """MLM loss per step of each language adapter (rolling mean), the shared head's in grey."""
    import matplotlib.pyplot as plt

    from .plotting import LANG_ORDER, use_style

    use_style()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 2]})
    head = log[log.phase == "head"]
    axes[0].plot(head.step, head.loss.rolling(smooth, min_periods=1).mean(), color="grey")
    axes[0].set_title("shared MLM head (base frozen)")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel(f"MLM loss (rolling mean of {smooth})")
    ad = log[log.phase == "adapter"]
    langs = [lang for lang in LANG_ORDER if lang in set(ad.lang)] + sorted(set(ad.lang) - set(LANG_ORDER))
    for lang in langs:
        sub = ad[ad.lang == lang]
        axes[1].plot(sub.step, sub.loss.rolling(smooth, min_periods=1).mean(), label=lang)
    axes[1].set_title("language adapters (head frozen)")
    axes[1].set_xlabel("step")
    axes[1].legend(frameon=False, ncol=2, fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------- routing
@dataclass(frozen=True)
class Routing:
    """Which adapter set-up each language goes through (the same rule on both sides of the bi-encoder).

    ``variant``: per-side | task-only | english. ``own``: (language, adapter) pairs, each
    language's own language adapter (per-side). ``default``: the language adapter of a
    language without an own one (english: ``la_en``; None: no language adapter).
    ``seen``: the languages the task adapter was trained on; ``unseen``: ``"own"``, or a
    language code whose adapter replaces the own one for every language not in ``seen``.
    ``tag`` (the run digest) goes into the embedding-cache key.
    """

    variant: str
    task: str | None = TASK
    own: tuple = ()
    default: str | None = None
    seen: tuple = ()
    unseen: str = "own"
    tag: str = ""

    def adapter_for(self, lang: str) -> str | None:
        """The language adapter ``lang`` goes through (None: task adapter only)."""
        own = dict(self.own)
        if not own:
            return self.default
        if lang not in own:
            raise KeyError(f"no language adapter for {lang!r} in this {self.variant} run "
                           f"(have {sorted(own)}): train one with train_language_adapters")
        if self.unseen != "own" and lang not in self.seen:
            return lang_adapter_name(self.unseen)
        return own[lang]

    def setup(self, lang: str):
        """The adapter composition for one language: ``Stack(la, task)``, ``task``, or None."""
        from adapters.composition import Stack

        parts = [x for x in (self.adapter_for(lang), self.task) if x]
        if not parts:
            return None
        return Stack(*parts) if len(parts) > 1 else parts[0]

    def setup_key(self, lang: str) -> str:
        """A short name of the set-up, e.g. ``la_de+task``."""
        return "+".join(x for x in (self.adapter_for(lang), self.task) if x) or "base"

    def with_unseen(self, lang: str = "en") -> "Routing":
        """Route languages the task adapter never saw through ``la_<lang>`` (``"own"``: their own).

        An evaluation-time option: nothing is retrained. Only per-side routing changes.
        """
        if lang != "own" and self.own and lang not in dict(self.own):
            raise ValueError(f"no language adapter for {lang!r} in this run; have {sorted(dict(self.own))}")
        return dataclasses.replace(self, unseen=lang)

    @property
    def label(self) -> str:
        """``per-side``, ``per-side/unseen-en``, ``task-only``, ``english``."""
        return self.variant if self.unseen == "own" or not self.own else f"{self.variant}/unseen-{self.unseen}"

    @property
    def adapters(self) -> list[str]:
        """Every adapter this routing may use."""
        names = set(dict(self.own).values()) | {self.default, self.task}
        if self.unseen != "own" and self.own:
            names.add(lang_adapter_name(self.unseen))
        return sorted(n for n in names if n)

    @property
    def key(self) -> str:
        return f"{self.label}@{self.tag}"

    def __str__(self) -> str:
        return self.key



def make_routing(variant: str, languages: Sequence[str] = (), train_languages: Sequence[str] = (),
                 tag: str = "") -> Routing:
    """The routing of a variant; ``languages``: those with an own language adapter (per-side)."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown adapter variant {variant!r}; choose one of {VARIANTS}.")
    seen = tuple(sorted(train_languages))
    if variant == "per-side":
        own = tuple((lang, lang_adapter_name(lang)) for lang in sorted(languages))
        return Routing(variant, TASK, own, None, seen, "own", tag)
    if variant == "english":
        return Routing(variant, TASK, (), lang_adapter_name("en"), seen, "own", tag)
    return Routing(variant, TASK, (), None, seen, "own", tag)


def group_by_setup(langs: Sequence[str], routing: Routing) -> dict[str, list[int]]:
    """Row positions per adapter set-up (in order of first appearance)."""
    groups: dict[str, list[int]] = {}
    for i, lang in enumerate(langs):
        groups.setdefault(routing.setup_key(lang), []).append(i)
    return groups


def _setup_of(routing: Routing, langs: Sequence[str], idx: list[int]):
    return routing.setup(langs[idx[0]])


def routed_embed_fn(routing: Routing):
    """An ``embed_fn`` for :func:`xlir_utils.training.train_run` that routes rows per language.

    The rows of one side are grouped by their adapter set-up; each group is embedded
    (with gradients) inside ``AdapterSetup(set-up)``; rows come back in their original order.
    """
    from adapters import AdapterSetup

    from .training import embed

    def embed_fn(model, texts, langs, kind):
        groups = group_by_setup(langs, routing)
        outs, order = [], []
        for idx in groups.values():
            with AdapterSetup(_setup_of(routing, langs, idx)):
                outs.append(embed(model, [texts[i] for i in idx], [langs[i] for i in idx], kind))
            order.extend(idx)
        if len(outs) == 1:
            return outs[0]
        out = torch.cat(outs)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return out[inverse.to(out.device)]

    return embed_fn


def encode_routed(model, texts: Sequence[str], langs: Sequence[str], kind: str, routing: Routing,
                  **encode_kwargs) -> np.ndarray:
    """Embeddings of ``texts`` (numpy, rows in input order), each language through its routed set-up.

    Calls ``xlir_utils.encoders.encode(model, group, kind, cache_key_extra=f"{routing.tag}:{set-up}")``
    once per adapter set-up inside ``AdapterSetup``. The key names the run and the set-up, not
    the routing's label, so two routings of one run share the groups they route alike.
    """
    from adapters import AdapterSetup

    from .encoders import encode

    texts, langs = list(texts), list(langs)
    if len(texts) != len(langs):
        raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
    out = None
    for key, idx in group_by_setup(langs, routing).items():
        with AdapterSetup(_setup_of(routing, langs, idx)):
            emb = encode(model, [texts[i] for i in idx], kind, cache_key_extra=f"{routing.tag}:{key}",
                         **encode_kwargs)
        emb = np.asarray(emb)
        if out is None:
            out = np.zeros((len(texts), emb.shape[1]), dtype=emb.dtype)
        out[idx] = emb
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out


# ----------------------------------------------------------------- task adapter + variants
def prepare_variant(model, variant: str, lang_adapter_dirs: dict[str, Path], task_reduction_factor: int,
                    seed: int, train_languages: Sequence[str] = ()) -> Routing:
    """Load the (frozen) language adapters a variant needs, add the task adapter, make only it trainable.

    ``train_adapter("task")`` is called first (it resets the active set-up); the routing is
    applied per forward pass by :func:`routed_embed_fn`.
    """
    auto = base_model(model)
    device = next(auto.parameters()).device
    needed = variant_languages(variant, lang_adapter_dirs)
    for lang in needed:
        if lang not in lang_adapter_dirs:
            raise FileNotFoundError(f"no language adapter for {lang!r}: run train_language_adapters first")
        name = lang_adapter_name(lang)
        if name not in auto.adapters_config:
            auto.load_adapter(str(Path(lang_adapter_dirs[lang]) / "adapter"), load_as=name)
            auto.adapter_to(name, device)
    if TASK in auto.adapters_config:
        auto.delete_adapter(TASK)
    torch.manual_seed(seed)
    auto.add_adapter(TASK, config=_task_adapter_config(task_reduction_factor))
    auto.adapter_to(TASK, device)
    auto.train_adapter(TASK)  # freezes the base and every language adapter; active = task
    return make_routing(variant, needed, train_languages)


def save_variant(model, folder: Path, routing: Routing, meta: dict) -> None:
    """Save the task adapter and the variant's language adapters (``save_adapter``) + a manifest."""
    auto = base_model(model)
    names = routing.adapters
    manifest = {"format": FORMAT_VERSION, "variant": routing.variant, "task": routing.task,
                "own": dict(routing.own), "default": routing.default,
                "train_languages": list(routing.seen), "saved": names, **meta}

    def write(tmp: Path) -> None:
        for name in names:
            (tmp / "adapters" / name).mkdir(parents=True)
            auto.save_adapter(str(tmp / "adapters" / name), name)
        atomic_write_json(manifest, tmp / MANIFEST)

    atomic_replace_dir(folder, write)


def variant_languages(variant: str, languages) -> list[str]:
    """The languages whose adapters a variant uses (per-side: all of ``languages``)."""
    return {"per-side": sorted(languages), "english": ["en"], "task-only": []}[variant]


def adapter_languages(profile: Profile, pairs: pd.DataFrame | None = None) -> tuple[str, ...]:
    """The languages that get an adapter: the profile's, plus any training language they miss.

    Per-side routing needs an adapter for every language a training pair uses (smoke's tiny
    MLQA-R slice has ar/es/hi besides en).
    """
    langs = list(profile.adapters.languages)
    if pairs is not None:
        langs += sorted((set(pairs.query_lang) | set(pairs.passage_lang)) - set(langs))
    return tuple(langs)


def train_variant(profile: Profile, variant: str, pairs: pd.DataFrame, *, model=None,
                  lang_dir: Path | None = None, run_dir: Path | None = None, stop_after: int | None = None,
                  languages: Sequence[str] | None = None, show_progress: bool = True) -> dict:
    """Train the task adapter of one variant with hybrid batches (:func:`training.train_run`).

    Same sampler, seed and step budget for every variant: ``profile.train`` with
    ``steps=adapters.task_steps`` and ``lr=adapters.task_lr``. Writes
    ``runs/<profile>/adapters-<variant>/`` (``model/`` holds the adapters + manifest).
    """
    from . import training

    a = profile.adapters
    lang_dir = lang_dir or language_adapters_dir(profile.name)
    run_dir = run_dir or paths.runs_dir(profile.name) / run_name(variant)
    languages = tuple(languages or adapter_languages(profile, pairs))
    lang_dirs = {p.name: p for p in sorted(lang_dir.iterdir())
                 if (p / "run.json").is_file() and (p / "adapter").is_dir()} if lang_dir.is_dir() else {}
    used = variant_languages(variant, languages)
    missing = [lang for lang in used if lang not in lang_dirs]
    if missing:
        raise FileNotFoundError(f"language adapters missing under {lang_dir}: {missing}. "
                                "Run language_adapters.train_language_adapters(cfg, languages=...) first.")
    lang_dirs = {k: v for k, v in lang_dirs.items() if k in languages}
    la_digests = {lang: json.loads((lang_dirs[lang] / "run.json").read_text())["digest"] for lang in used}
    cfg = dataclasses.replace(profile.train, steps=a.task_steps, lr=a.task_lr)
    extra = json.dumps({"variant": variant, "task_config": TASK_CONFIG, "task_rf": a.task_reduction_factor,
                        "lang_adapters": la_digests, "format": FORMAT_VERSION}, sort_keys=True)
    spec = training.make_spec(run_name(variant), profile.encoder, "hybrid", cfg, profile.seed, pairs, extra=extra)
    if (record := training.finished_record(run_dir, spec.digest())) is not None \
            and (run_dir / "model" / MANIFEST).is_file():
        return record  # reuse without loading the model
    model = model if model is not None else load_encoder(profile.encoder, profile)
    train_languages = sorted(set(pairs.query_lang) | set(pairs.passage_lang))
    routing = prepare_variant(model, variant, lang_dirs, a.task_reduction_factor, profile.seed, train_languages)
    routing = dataclasses.replace(routing, tag=spec.digest())
    meta = {"base_encoder": profile.encoder, "profile": profile.name, "digest": spec.digest(),
            "lang_adapter_digests": la_digests}

    def save_fn(m, folder):
        save_variant(m, folder, routing, meta)

    saved_len = model.max_seq_length
    model.max_seq_length = cfg.max_seq_length  # training truncates as notebook 02 does
    try:
        return training.train_run(model, pairs, spec, run_dir, embed_fn=routed_embed_fn(routing),
                                  save_fn=save_fn, stop_after=stop_after, show_progress=show_progress)
    finally:
        model.max_seq_length = saved_len


def load_variant(run_dir: Path, *, unseen: str = "own", profile: Profile | None = None, model=None):
    """Rebuild a trained variant: ``(model, routing)``.

    The base encoder is loaded with ``load_encoder`` and the adapters with ``load_adapter``
    (never through ``SentenceTransformer(folder)``, which drops them). ``unseen="en"``
    routes languages that the task adapter never saw through the English adapter.
    """
    run_dir = Path(run_dir)
    folder = run_dir / "model" if (run_dir / "model" / MANIFEST).is_file() else run_dir
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: is {run_dir} a finished adapters-* run of notebook 03?")
    manifest = json.loads(manifest_path.read_text())
    model = model if model is not None else load_encoder(manifest["base_encoder"], profile)
    auto = base_model(model)
    device = next(auto.parameters()).device
    for name in manifest["saved"]:
        if name in auto.adapters_config:
            auto.delete_adapter(name)
        auto.load_adapter(str(folder / "adapters" / name), load_as=name)
        auto.adapter_to(name, device)
    auto.requires_grad_(False)
    auto.active_adapters = None
    model.eval()
    routing = Routing(manifest["variant"], manifest["task"], tuple(sorted(manifest["own"].items())),
                      manifest["default"], tuple(manifest["train_languages"]), "own", manifest["digest"])
    if unseen != "own":
        routing = routing.with_unseen(unseen)
    return model, routing
