"""Mewsli-X (Botha et al. 2020; the XTREME-R release ``mewsli-x_20220518_6``): entity linking as
retrieval, XTREME-R's second retrieval task (``paper`` profile; notebook 04 §9).

**Preparation (by hand, once).** The released archive (``mewsli-x_20220518_6.zip``, 291 MB, md5
``6d3f137027c7e0146c7aa0b3c21e90f4``, from https://storage.googleapis.com/gresearch/mewsli/)
holds mention offsets without their text; the text of the WikiNews articles is restored from the
2019-01-01 WikiNews dumps by the script of google-research ``dense_representations_for_entity_retrieval/mel``
(``get-mewsli-x.sh``; Apache 2.0; the data is CC BY 3.0 / CC BY-SA 3.0 from Wikipedia and
WikiNews). Put its outputs under ``XLIR_DATA_DIR/mewsli-x/``:

* ``candidate_set_entities.jsonl``: one entity per line: ``entity_id`` (WikiData QID), ``title``,
  ``description``, ``description_url``, ``description_language``, ``sentence_spans`` (1,003,893 entities);
* ``wikinews_mentions-<split>.jsonl``: one article per line: ``context`` (``language``, ``text``,
  ``sentence_spans``, ...) and ``mentions`` (``example_id``, ``entity_id``, ``mention_span``
  {``start``, ``end``, ``text``}).

The release notes say it plainly: results on this release are **not directly comparable** to the
XTREME-R paper's numbers (the dataset was re-sampled and re-processed).

Queries and candidates are built as XTREME-R builds them (``third_party/utils_mewslix.py``): a
query is ``"<mention>: <left> { <mention> } <right>"`` within the sentence that holds the mention;
a candidate is its description's sentences joined by spaces (no title). The metric is mAP@20,
with one gold entity per query 1/rank within the top 20 (else 0), the mean per language, then the
mean over XTREME-R's 11 query languages.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .. import paths
from .fetch import DataError, DataUnavailable, offline_dir_state
from .jsonl import json_lines

LANGUAGES = ("ar", "de", "en", "es", "fa", "ja", "pl", "ro", "ta", "tr", "uk")
ARCHIVE = "mewsli-x_20220518_6.zip"
ARCHIVE_MD5 = "6d3f137027c7e0146c7aa0b3c21e90f4"
CANDIDATES_FILE = "candidate_set_entities.jsonl"


def _folder() -> Path:
    offline = paths.offline_data_dir()
    for root in ([offline / "mewsli-x"] if offline else []) + [paths.raw_dir() / "mewsli-x"]:
        if (root / CANDIDATES_FILE).is_file():
            return root
    raise DataUnavailable(
        f"Mewsli-X is not prepared: no {CANDIDATES_FILE} under XLIR_DATA_DIR/mewsli-x/ or data/raw/mewsli-x/ "
        f"({offline_dir_state(f'mewsli-x/{CANDIDATES_FILE}')}). "
        f"Download {ARCHIVE} (md5 {ARCHIVE_MD5}) and restore its WikiNews text with get-mewsli-x.sh from "
        "google-research/google-research dense_representations_for_entity_retrieval/mel, then copy "
        f"{CANDIDATES_FILE} and wikinews_mentions-<split>.jsonl there (see xlir_utils/data/mewsli_x.py). "
        "Mewsli-X is needed only by the paper profile."
    )


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def mewsli_candidates(limit: int | None = None) -> pd.DataFrame:
    """The candidate entities: ``entity_id``, ``language``, ``text`` (the description's sentences)."""
    path = _folder() / CANDIDATES_FILE
    rows = []
    for n, entity in json_lines(path, "a candidate entity (JSON)"):
        try:
            desc = entity["description"]
            sentences = [desc[s["start"]:s["end"]] for s in entity.get("sentence_spans") or []] or [desc]
            rows.append((entity["entity_id"], entity.get("description_language", ""), _squash(" ".join(sentences))))
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}, line {n}: an entity lacks {exc}: expected entity_id, description, "
                            "sentence_spans") from exc
        if limit and len(rows) >= limit:
            break
    return pd.DataFrame(rows, columns=["entity_id", "language", "text"])


def _query_text(text: str, start: int, end: int, sentence_spans) -> str:
    """XTREME-R's query: the mention, a colon, then its sentence with the mention in braces."""
    span = next(((s["start"], s["end"]) for s in sentence_spans or [] if s["start"] <= start and end <= s["end"]),
                (0, len(text)))
    left = text[span[0]:start].replace("{", "(").replace("}", ")")
    right = text[end:span[1]].replace("{", "(").replace("}", ")")
    mention = text[start:end]
    return _squash(f"{mention}: {left} {{ {mention} }} {right}")


def mewsli_queries(split: str = "dev", languages=LANGUAGES) -> pd.DataFrame:
    """The mention queries: ``example_id``, ``lang``, ``text``, ``entity_id`` (the gold QID)."""
    path = _folder() / f"wikinews_mentions-{split}.jsonl"
    if not path.is_file():
        raise DataUnavailable(f"{path} is missing: prepare Mewsli-X's {split} split (see xlir_utils/data/mewsli_x.py).")
    rows = []
    for n, doc in json_lines(path, "an article with its mentions (JSON)"):
        try:
            context = doc["context"]
            lang, text = context["language"], context["text"]
            if lang not in languages:
                continue
            if not text:
                raise DataError(f"{path}, line {n}: article {context.get('document_id')} has no text: run the WikiNews "
                                "restoration of get-mewsli-x.sh (the _no_text files lack it)")
            for m in doc["mentions"]:
                span = m["mention_span"]
                rows.append((m["example_id"], lang, _query_text(text, span["start"], span["end"],
                                                                context.get("sentence_spans")), m["entity_id"]))
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}, line {n}: a record lacks {exc}: expected context{{language,text}} "
                            "and mentions") from exc
    return pd.DataFrame(rows, columns=["example_id", "lang", "text", "entity_id"])
