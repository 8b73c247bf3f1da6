"""Where results go: the result-table names, :func:`save_table`, :func:`read_table` and
:func:`save_figure` (every notebook).

Tables and figures of the ``quick`` profile are the kit's committed artefacts (``results/``,
``figures/``); other profiles write to a sub-folder. Every write is atomic, and a figure is
written as PNG and PDF without timestamps, so a rerun on the same results gives the same files.
Every result file is recorded with its SHA-256 and the run that wrote it
(:mod:`xlir_utils.manifest`) and verified whenever it is read.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from . import config, manifest, paths
from .errors import DamagedFileError
from .io_utils import atomic_write_bytes, table_bytes

# result tables, in the order the notebooks write them
DATA_COUNTS_FILE = "data_counts.csv"  # questions and candidates per language (notebook 01)
LENGTHS_FILE = "text_lengths.parquet"  # characters per question / candidate sentence (notebook 01)
RECIPE_GRID_FILE = "recipe_grid.csv"  # the recipe study: every grid run at every dev-scored step (make recipe-study)
RECIPE_CHOICE_FILE = "recipe_choice.json"  # the recipe study's rule and choice (make recipe-study)
TRAIN_RUNS_FILE = "train_runs.csv"  # one row per full fine-tuning run (notebook 02)
TRAIN_LOGS_FILE = "train_logs.csv"  # loss per step of the full fine-tuning runs (notebook 02)
LEXICONS_FILE = "lexicons.csv"  # English-X lexicons: parallel text, entries per language (notebook 01)
CODE_SWITCHING_DEV_FILE = "code_switching_dev.csv"  # code-switching settings on mlqa-r-dev, one seed (notebook 02)
CODE_SWITCHING_CHOICE_FILE = "code_switching_choice.json"  # the rule and the chosen setting (notebook 02)
ADAPTER_RUNS_FILE = "adapter_runs.csv"  # one row per adapter variant (notebook 03)
MLM_LOG_FILE = "mlm_log.csv"  # MLM head's held-out loss per epoch, each language adapter's loss per step (notebook 03)
MLM_HELDOUT_FILE = "mlm_heldout.csv"  # held-out MLM loss per language: head, adapters before/after (notebook 03)
MLM_HEAD_STUDY_FILE = "mlm_head_study.csv"  # the candidate MLM heads: set-up, macro held-out loss, budget (notebook 03)
MLM_HEAD_LANGS_FILE = "mlm_head_study_languages.csv"  # held-out loss per candidate head and language (notebook 03)
MLM_MATRIX_FILE = "mlm_adapter_matrix.csv"  # held-out MLM loss change, language adapter x language (notebook 03)
HIDDEN_SHIFT_FILE = "adapter_hidden_shift.csv"  # how far each language adapter moves its language (notebook 03)
ADAPTER_LOGS_FILE = "adapter_train_logs.csv"  # loss per step of the task-adapter runs (notebook 03)
ADAPTER_LR_GRID_FILE = "adapter_lr_grid.csv"  # the adapters' learning rates on mlqa-r-dev, one seed (notebook 03)
EVAL_FILE = "evaluation.parquet"  # tidy rows of every system (notebook 04; Parquet: 0.8 MB where CSV took 7 MB)
PER_QUERY_FILE = "per_query_multi.parquet"  # per-query multilingual AP and rank distance (notebook 04)
PAIRED_FILE = "paired_tests.csv"  # per run, paired comparisons against the zero-shot baseline (notebook 04)
SEED_MEANS_FILE = "seed_means.csv"  # every system's mean over seeds, intervals over queries and seeds (notebook 04)
SEED_COMPARISONS_FILE = "seed_comparisons.csv"  # hybrid - X-X, hybrid - X-Y, ... over queries and seeds (notebook 04)
UNSEEN_MEANS_FILE = "unseen_seed_means.csv"  # seed means on the queries in languages no training batch held (notebook 04)
UNSEEN_COMPARISONS_FILE = "unseen_seed_comparisons.csv"  # the adapter comparisons on those queries (notebook 04)
LARGE_SCALE_FILE = "large_scale.csv"  # Mewsli-X mAP@20 and MIRACL nDCG@10 / Recall@100 (notebook 04, paper)
POST_HOC_FILE = "post_hoc_evaluation.parquet"  # rows of every system after LIR or LEACE (notebook 05)
POST_HOC_SEED_MEANS_FILE = "post_hoc_seed_means.csv"  # seed means of every system + LIR or LEACE (notebook 05)
POST_HOC_COMPARISONS_FILE = "post_hoc_seed_comparisons.csv"  # e.g. trained + LIR against zero-shot + LIR (notebook 05)
PROJECTION_FILE = "projection.csv"  # 2-D projection of parallel answers (notebook 05)
SEPARATION_FILE = "language_separation.csv"  # how far apart the languages sit, per system and seed (notebook 05)
RUNTIMES_FILE = "runtimes.csv"  # each notebook's runtime per profile, measured or estimated (make reproduce)
TABLES_FOLDER = "tables"  # paper-style tables as CSV (make figures, notebook 05 §9)

WRITERS = {  # who writes each file: named in an error so the reader knows what to rerun
    DATA_COUNTS_FILE: "notebook 01", LENGTHS_FILE: "notebook 01", RECIPE_GRID_FILE: "make recipe-study",
    RECIPE_CHOICE_FILE: "make recipe-study", TRAIN_RUNS_FILE: "notebook 02", TRAIN_LOGS_FILE: "notebook 02",
    LEXICONS_FILE: "notebook 01", CODE_SWITCHING_DEV_FILE: "notebook 02", CODE_SWITCHING_CHOICE_FILE: "notebook 02",
    ADAPTER_RUNS_FILE: "notebook 03", MLM_LOG_FILE: "notebook 03", MLM_HELDOUT_FILE: "notebook 03",
    MLM_HEAD_STUDY_FILE: "notebook 03", MLM_HEAD_LANGS_FILE: "notebook 03", MLM_MATRIX_FILE: "notebook 03",
    HIDDEN_SHIFT_FILE: "notebook 03", ADAPTER_LOGS_FILE: "notebook 03", ADAPTER_LR_GRID_FILE: "notebook 03",
    EVAL_FILE: "notebook 04",
    PER_QUERY_FILE: "notebook 04", PAIRED_FILE: "notebook 04", SEED_MEANS_FILE: "notebook 04",
    SEED_COMPARISONS_FILE: "notebook 04", UNSEEN_MEANS_FILE: "notebook 04",
    UNSEEN_COMPARISONS_FILE: "notebook 04", LARGE_SCALE_FILE: "notebook 04", POST_HOC_FILE: "notebook 05",
    POST_HOC_SEED_MEANS_FILE: "notebook 05", POST_HOC_COMPARISONS_FILE: "notebook 05", PROJECTION_FILE: "notebook 05",
    SEPARATION_FILE: "notebook 05", RUNTIMES_FILE: "make reproduce",
}


def writer_of(name: str) -> str:
    """The notebook or command that writes the result file ``name``."""
    if name.startswith(TABLES_FOLDER + "/"):
        return "make figures"
    if name not in WRITERS:
        raise KeyError(f"{name!r} is not one of the kit's result files: add it to outputs.WRITERS")
    return WRITERS[name]


def table_path(name: str, profile: str) -> Path:
    """``results/<name>`` for ``quick``, ``results/<profile>/<name>`` otherwise."""
    return paths.results_dir(profile) / name


def save_table(df: pd.DataFrame, name: str, profile: str, **csv_kwargs) -> Path:
    """Write a result table atomically and record it in the manifest: Parquet for ``*.parquet``,
    else CSV (no index unless asked); notebooks 01-05."""
    data = table_bytes(df, name.endswith(".parquet"), **csv_kwargs)
    return manifest.write_result(paths.results_dir(profile), name, data, writer_of(name))


def save_json(obj, name: str, profile: str) -> Path:
    """Write a JSON result (the recipe study's choice, notebook 02 §7's code-switching choice) like
    :func:`save_table`."""
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode() + b"\n"
    return manifest.write_result(paths.results_dir(profile), name, data, writer_of(name))


def _verified(name: str, profile: str) -> bytes:
    path = table_path(name, profile)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run {writer_of(name)} (see notebooks/README.md) "
                                f"in the {profile!r} profile first.")
    return manifest.verify(paths.results_dir(profile), name, writer_of(name))


def read_json(name: str, profile: str):
    """A JSON result, verified against the manifest (notebook 02 §4, ``make figures``)."""
    data = _verified(name, profile)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise DamagedFileError(f"{table_path(name, profile)} is not valid JSON ({exc}): rerun {writer_of(name)}.") \
            from exc


def read_table(name: str, profile: str) -> pd.DataFrame:
    """A result table a notebook saved, verified against the manifest (notebooks 02-05,
    ``make figures``); a missing, unrecorded or damaged one raises naming the file and the fix."""
    path = table_path(name, profile)
    data = _verified(name, profile)
    try:
        table = pd.read_parquet(io.BytesIO(data)) if name.endswith(".parquet") else pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pyarrow and the CSV parser raise many types
        raise DamagedFileError(f"{path} is unreadable ({type(exc).__name__}: {exc}): rerun {writer_of(name)} "
                               "to rewrite it.") from exc
    if "training" in table.columns and "family" not in table.columns:
        raise DamagedFileError(f"{path} describes systems by an older 'training' text rather than by their "
                               f"columns (family, sampling, alpha, ...): rerun {writer_of(name)} in the "
                               f"{profile!r} profile to rewrite it.")
    return table


_FIGURE_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "ModDate": None, "Producer": None}}


def save_figure(fig, name: str, profile: str, folder: Path | None = None) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` and ``<name>.pdf`` (the profile's ``figure_formats``: smoke
    writes PNG only) under the profile's figures folder, without timestamps (notebooks 01-05)."""
    folder = paths.ensure(folder or paths.figures_dir(profile))
    written = []
    for ext in config.load(profile).figure_formats:
        meta = _FIGURE_METADATA[ext]
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, bbox_inches="tight", metadata=meta)
        written.append(atomic_write_bytes(buffer.getvalue(), folder / f"{name}.{ext}"))
    return written
