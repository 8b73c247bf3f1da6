"""Which MLM head gives language adapters the best signal, measured on held-out text (notebook 03 §3).

MAD-X trains each language adapter against the pre-trained model's own MLM head. e5-small has
none, so one is trained, and the best one e5-small can give is chosen by its held-out MLM loss
(macro mean over the languages) among :func:`head_candidates`, each under the same CPU budget:

* ``final layer``: the head on the last layer's states, the MLM text alone (NTREX-128 and the
  training part's sentences), each text masked once;
* ``final layer, more text``: the same head with the questions of the training part and MKQA
  added, each text masked ``adapters.head_maskings`` times;
* ``layer k, more text``: the head on an intermediate layer's states (``k`` halfway between the
  frozen prefix and the top); the language adapters then live in the layers below ``k`` only;
* ``final layer + transformer layer, more text``: one transformer layer of the head's own over
  the last layer's states (:class:`~.mlm.ContextBlock`), each text masked once.

With ``adapters.head_screen_epochs`` the candidates are compared after that many epochs each
(the study's equal budget) and only the best trains on to ``head_max_epochs``: with four
candidates, a two-epoch screen and six epochs in all, half the epochs of training every
candidate to the end. Every candidate is scored on the same
held-out text and the same vocabulary. There is no bar a
head has to pass: the table states how much signal there is, and each language adapter is then
judged by what it does to its own language's held-out loss (:mod:`.lang_training`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import pandas as pd
import torch

from ..config import Profile
from ..seeding import derived_seed
from ..training.step import autocast_for
from .mlm import CachedStates, MLMHead, _masked_batch, head_loss, new_mlm_head, train_head


@dataclass(frozen=True)
class HeadCandidate:
    """One way to build the MLM head (notebook 03 §3)."""

    name: str
    layer: int  # the hidden state it reads: -1 = the last layer
    more_text: bool  # the questions of the training part and MKQA added to its training text
    maskings: int  # how many times each training text is masked (each masking: new positions)
    context_layers: int  # 1: a transformer layer of the head's own before the transform


def intermediate_layer(n_layers: int, frozen: int) -> int:
    """The intermediate layer a candidate head reads: halfway between the frozen prefix and the top."""
    return frozen + max(1, (n_layers - frozen) // 2)


def head_candidates(profile: Profile, n_layers: int) -> tuple[HeadCandidate, ...]:
    """The heads compared in notebook 03 §3, for an encoder of ``n_layers`` layers."""
    k = intermediate_layer(n_layers, profile.train.freeze_layers)
    m = profile.adapters.head_maskings
    return (
        HeadCandidate("final layer", -1, False, 1, 0),
        HeadCandidate("final layer, more text", -1, True, m, 0),
        HeadCandidate(f"layer {k}, more text", k, True, m, 0),
        HeadCandidate("final layer + transformer layer, more text", -1, True, 1, 1),
    )


@torch.no_grad()  # not inference_mode: the cached tensors are trained on later
def candidate_states(model, candidates: Sequence[HeadCandidate], vocab: torch.Tensor,
                     texts: dict[str, list[str]], more: dict[str, list[str]], profile: Profile, purpose: str, *,
                     once: bool = False, precision: str = "fp32") -> dict[str, dict[str, CachedStates]]:
    """What each candidate head reads, per language, from one encoder pass per masking: every text
    of ``texts`` (and of ``more`` for the candidates with more text) masked each candidate's
    ``maskings`` times (``once``: one masking for all, as for held-out text), with seeds derived
    from ``purpose``. Candidates with the same masking see the same masked tokens."""
    a = profile.adapters
    probe = new_mlm_head(model, vocab)  # masking draws its random replacements from the vocabulary
    auto = model[0].auto_model
    device = next(auto.parameters()).device
    n_layers = auto.config.num_hidden_layers
    out: dict[str, dict[str, list]] = {c.name: {} for c in candidates}
    was_training = model.training
    model.eval()
    try:
        with autocast_for(precision, device):
            for m in range(1 if once else max(c.maskings for c in candidates)):
                for lang in texts:
                    for source, lang_texts in (("base", texts[lang]), ("more", more.get(lang, []))):
                        users = [c for c in candidates if m < c.maskings and (source == "base" or c.more_text)]
                        if not users or not lang_texts:
                            continue
                        gen = torch.Generator().manual_seed(derived_seed(profile.seed, purpose, lang, source, m))
                        for start in range(0, len(lang_texts), 64):
                            ids, mask, labels = _masked_batch(model, probe, lang_texts[start:start + 64],
                                                              a.mlm_max_seq_length, gen)
                            hidden = auto(input_ids=ids.to(device), attention_mask=mask.to(device),
                                          output_hidden_states=True).hidden_states
                            where = (labels != -100).to(device)
                            targets = probe.targets(labels.to(device)[where]).cpu()
                            for c in users:
                                states = hidden[n_layers if c.layer < 0 else c.layer]
                                if c.context_layers:
                                    item = ((states.to(torch.bfloat16).cpu(), mask.cpu(), where.cpu()), targets)
                                else:
                                    item = ((states[where].float().cpu(),), targets)
                                out[c.name].setdefault(lang, []).append(item)
    finally:
        if was_training:
            model.train()
    return {name: {lang: CachedStates(items) for lang, items in by_lang.items()} for name, by_lang in out.items()}


def train_candidate(model, candidate: HeadCandidate, vocab: torch.Tensor, train: CachedStates,
                    held: dict[str, CachedStates], held_text: dict[str, list[str]], profile: Profile, *,
                    precision: str = "fp32", show_progress: bool = True, max_epochs: int | None = None,
                    head: MLMHead | None = None, first_epoch: int = 1) -> tuple[MLMHead, pd.DataFrame, pd.DataFrame]:
    """Train one candidate head on its cached states (:func:`candidate_states`), at most
    ``adapters.head_max_positions`` of them (a seeded sample), within the budget of ``max_epochs``
    (default ``adapters.head_max_epochs``) / ``head_max_seconds``. ``head``: continue that head
    (the screen's winner, notebook 03 §3) from epoch ``first_epoch``, with a fresh optimiser.
    Returns (head, per-epoch log, held-out loss and accuracy per language)."""
    a = profile.adapters
    if head is None:
        torch.manual_seed(derived_seed(profile.seed, "head-init", candidate.name))
        head = new_mlm_head(model, vocab, layer=candidate.layer, context_layers=candidate.context_layers)
    head.requires_grad_(True)
    if a.head_max_positions:
        train = train.sample(a.head_max_positions, derived_seed(profile.seed, "head-positions", candidate.name))
    log = train_head(head, train, CachedStates.concat(list(held.values())), lr=a.head_lr, batch=a.head_batch,
                     max_epochs=max_epochs or a.head_max_epochs, patience=a.head_patience,
                     seed=derived_seed(profile.seed, "head-epochs", *([first_epoch] if first_epoch > 1 else [])),
                     precision=precision,
                     max_seconds=a.head_max_seconds, show_progress=show_progress)
    log["epoch"] += first_epoch - 1
    head.eval()
    head.requires_grad_(False)
    rows = []
    for lang, states in held.items():
        loss, acc = head_loss(head, states, precision=precision)
        rows.append({"lang": lang, "heldout_texts": len(held_text[lang]), "masked_tokens": len(states),
                     "head_loss": loss, "head_accuracy": acc})
    return head, log.assign(candidate=candidate.name, train_positions=len(train)), \
        pd.DataFrame(rows).assign(candidate=candidate.name)


def summarise(per_lang: pd.DataFrame, logs: pd.DataFrame, candidates: Sequence[HeadCandidate]) -> pd.DataFrame:
    """One row per candidate: its set-up, the macro held-out loss and accuracy, its training
    positions, epochs and training seconds (the shared encoder passes not included; notebook 03 §3)."""
    rows = []
    for c in candidates:
        held = per_lang[per_lang.candidate == c.name]
        log = logs[logs.candidate == c.name]
        rows.append({**asdict(c), "heldout_loss": held.head_loss.mean(), "heldout_accuracy": held.head_accuracy.mean(),
                     "train_positions": int(log.train_positions.iloc[0]), "epochs": len(log),
                     "seconds": float(log.seconds.sum())})
    return pd.DataFrame(rows)


def choose_head(summary: pd.DataFrame) -> str:
    """The candidate with the lowest macro held-out loss (the rule of notebook 03 §3)."""
    return str(summary.loc[summary.heldout_loss.idxmin(), "name"])
