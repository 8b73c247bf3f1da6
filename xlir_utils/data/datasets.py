"""Which retrieval set a profile means by a dataset name (notebooks 01-05).

* ``xquad-r``, ``mlqa-r``: a LAReQA set as an evaluation set (``profile.eval_articles``, and
  ``profile.eval_questions`` of them, with the whole candidate pool), or in full as the reverse
  fold's training set;
* ``mlqa-r-dev``: the development set, a fixed, seeded share (``profile.dev_fraction``) of
  MLQA-R's articles in every language, held out from training (``profile.train_articles``
  limits the articles it is drawn from). Every recipe choice, early stopping and selection
  uses it; XQuAD-R is touched only by the final evaluation;
* ``mlqa-r-train``: the rest of those articles, what smoke and quick train on.
"""
from __future__ import annotations

from ..errors import SettingsError
from .lareqa import RetrievalSet, Split
from .processed import read_processed

DEV, TRAIN = "-dev", "-train"


def dev_split(profile, part: str) -> Split | None:
    """The profile's held-out split of its LAReQA training set (None when it has none)."""
    if getattr(profile, "dev_fraction", None) is None:
        return None
    return Split(part, profile.dev_fraction, profile.seed)


def retrieval_set(profile, name: str, *, every_question: bool = False) -> RetrievalSet:
    """The retrieval set ``name`` of a profile: an evaluation set, the dev set or the training
    part (see the module docstring; notebooks 01 §2, 02 §1, 04 §1). ``every_question``: an
    evaluation set with all its questions, whatever ``profile.eval_questions`` (the leakage check)."""
    for suffix, part in ((DEV, "dev"), (TRAIN, "train")):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            split = dev_split(profile, part)
            if split is None:
                raise SettingsError(f"the {profile.name!r} profile holds out no {name!r} (dev_fraction is None)")
            return read_processed(base, profile.name, articles=profile.train_articles, split=split)
    if name == profile.train_dataset:
        return read_processed(name, profile.name, articles=profile.train_articles)
    rset = read_processed(name, profile.name, articles=profile.eval_articles)
    return rset if every_question else rset.first_questions(getattr(profile, "eval_questions", None))


def training_set(profile) -> RetrievalSet:
    """The LAReQA set a smoke or quick profile trains on: its training part when the profile
    holds out a dev set (``mlqa-r-train``), else the whole training dataset (reverse fold;
    notebooks 01 §2, 02 §1)."""
    name = profile.train_dataset
    return retrieval_set(profile, name + TRAIN if dev_split(profile, "train") is not None else name)
