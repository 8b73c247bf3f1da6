"""Which adapter set-up each language goes through, and routed embedding (notebooks 03 §1, §5; 04 §2).

A :class:`Routing` applies one rule to both sides of the bi-encoder. The rows of one side are
grouped by their adapter set-up (:func:`group_by_setup`); each group runs its own forward pass
inside ``AdapterSetup(set-up)`` and the outputs go back to the original row order:
:func:`routed_embed_fn` with gradients for training, :func:`encode_routed` (numpy, cached) for
evaluation.

================  ======================  ======================
variant           query side              passage side
================  ======================  ======================
mlm-per-side      la_<lang(q)> + task     la_<lang(p)> + task
joint-per-side    la_<lang(q)> + task     la_<lang(p)> + task
task-only         task                    task
shared-control    task (a larger one)     task (a larger one)
english           la_en + task            la_en + task
================  ======================  ======================

For languages the task adapter never saw in training (``seen``), a per-side routing can also
send the text through the English adapter (``unseen="en"``) or through no language adapter
(``unseen="none"``): evaluation-time options, nothing is retrained.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..encoders import encode
from ..encoders.fingerprint_scope import frozen_weights
from ..training import embed_with_grad
from ..training.step import in_input_order
from .plumbing import TASK, lang_adapter_name

VARIANTS = ("task-only", "mlm-per-side", "joint-per-side", "shared-control", "english")
PER_SIDE = ("mlm-per-side", "joint-per-side")  # each side through its own language's adapter
UNSEEN_OPTIONS = ("own", "en", "none")


@dataclass(frozen=True)
class Routing:
    """Which adapter set-up each language goes through (the same rule on both sides of the bi-encoder).

    ``variant``: one of :data:`VARIANTS`. ``own``: (language, adapter) pairs, each language's
    own language adapter (per-side). ``default``: the language adapter of a language without an
    own one (english: ``la_en``; None: no language adapter). ``seen``: the languages the task
    adapter was trained on; ``unseen``: ``"own"``, ``"none"`` (no language adapter) or a language
    code whose adapter replaces the own one for every language not in ``seen``.
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
            return None if self.unseen == "none" else lang_adapter_name(self.unseen)
        return own[lang]

    def setup(self, lang: str):
        """The adapter composition for one language: ``Stack(la, task)``, ``task``, or None."""
        # lazy: importing adapters loads transformers' model classes (seconds), and a Routing is
        # built and read (xlir_utils.systems, manifests) without it
        from adapters.composition import Stack

        parts = [x for x in (self.adapter_for(lang), self.task) if x]
        if not parts:
            return None
        return Stack(*parts) if len(parts) > 1 else parts[0]

    def setup_key(self, lang: str) -> str:
        """A short name of the set-up, e.g. ``la_de+task``."""
        return "+".join(x for x in (self.adapter_for(lang), self.task) if x) or "base"

    def with_unseen(self, lang: str = "en") -> "Routing":
        """Route languages the task adapter never saw through ``la_<lang>`` (``"own"``: their own;
        ``"none"``: no language adapter). An evaluation-time option: nothing is retrained. Only
        per-side routing changes (notebooks 03 §5, 04 §2)."""
        if lang not in ("own", "none") and self.own and lang not in dict(self.own):
            raise ValueError(f"no language adapter for {lang!r} in this run; have {sorted(dict(self.own))}")
        return dataclasses.replace(self, unseen=lang)

    @property
    def label(self) -> str:
        """``mlm-per-side``, ``mlm-per-side/unseen-en``, ``joint-per-side/unseen-none``, ``task-only``, ..."""
        return self.variant if self.unseen == "own" or not self.own else f"{self.variant}/unseen-{self.unseen}"

    @property
    def adapters(self) -> list[str]:
        """Every adapter this routing may use."""
        names = set(dict(self.own).values()) | {self.default, self.task}
        if self.unseen not in ("own", "none") and self.own:
            names.add(lang_adapter_name(self.unseen))
        return sorted(n for n in names if n)

    @property
    def key(self) -> str:
        return f"{self.label}@{self.tag}"

    def __str__(self) -> str:
        return self.key


def make_routing(variant: str, languages: Sequence[str] = (), train_languages: Sequence[str] = (),
                 tag: str = "") -> Routing:
    """The routing of a variant; ``languages``: those with an own language adapter (per-side;
    notebook 03 §1 tabulates it)."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown adapter variant {variant!r}; choose one of {VARIANTS}.")
    seen = tuple(sorted(train_languages))
    if variant in PER_SIDE:
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


def routed_embed_fn(routing: Routing, prefix_cache=None):
    """An ``embed_fn`` for :func:`xlir_utils.training.train_run` that routes rows per language
    (notebook 03 §1).

    The rows of one side are grouped by their adapter set-up; each group is embedded
    (with gradients) inside ``AdapterSetup(set-up)``; rows come back in their original order.
    With ``prefix_cache`` (:class:`xlir_utils.training.frozen_prefix.PrefixCache`) only the
    layers above the frozen prefix run.
    """
    from adapters import AdapterSetup  # lazy, as in Routing.setup

    def embed_fn(model, texts, langs, kind):
        groups = list(group_by_setup(langs, routing).values())
        outs = []
        for idx in groups:
            group = [texts[i] for i in idx]
            with AdapterSetup(routing.setup(langs[idx[0]])):
                if prefix_cache is not None:
                    outs.append(prefix_cache.embed(model, group, kind))
                else:
                    outs.append(embed_with_grad(model, group, [langs[i] for i in idx], kind))
        return in_input_order(groups, outs)

    return embed_fn


def encode_routed(model, texts: Sequence[str], langs: Sequence[str], kind: str, routing: Routing,
                  **encode_kwargs) -> np.ndarray:
    """Embeddings of ``texts`` (numpy, rows in input order), each language through its routed set-up
    (notebooks 03 §5, 04 §3).

    Calls ``xlir_utils.encoders.encode(model, group, kind, cache_key_extra=f"{routing.tag}:{set-up}")``
    once per adapter set-up inside ``AdapterSetup``. The key names the run and the set-up, not
    the routing's label, so two routings of one run share the groups they route alike.
    """
    from adapters import AdapterSetup  # lazy, as in Routing.setup

    texts, langs = list(texts), list(langs)
    if len(texts) != len(langs):
        raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
    out = None
    with frozen_weights():  # no weight changes while encoding: each set-up's weights hashed once
        for key, idx in group_by_setup(langs, routing).items():
            with AdapterSetup(routing.setup(langs[idx[0]])):
                emb = encode(model, [texts[i] for i in idx], kind, cache_key_extra=f"{routing.tag}:{key}",
                             **encode_kwargs)
            emb = np.asarray(emb)
            if out is None:
                out = np.zeros((len(texts), emb.shape[1]), dtype=emb.dtype)
            out[idx] = emb
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out
