"""The ``paper`` profile end to end, without a GPU or a hub: a tiny XLM-R-architecture model in an
offline Hugging Face cache stands in for ``xlm-roberta-base``; tiny mMARCO, Mewsli-X and MIRACL
fixtures in their exact upstream layouts stand in for the data; sizes are shrunk by overrides.
Training runs through the real entry point on two gloo processes; then the systems, encoding,
LAReQA, Tatoeba, Mewsli-X, MIRACL and the tables run as notebook 04 runs them. It fails if any
``paper``-only branch is broken. Not covered: LaBSE (another hub model, the same loading path)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import isolated_project, offline_tokenizer
from helpers import write_fixture, write_mewsli, write_miracl

pytestmark = pytest.mark.slow

LANGS = ["en", "de", "zh"]
OVERRIDES = {"train_languages": LANGS, "train_queries": 8, "eval_articles": 1, "baselines": ["xlm-roberta-base"],
             "tatoeba_languages": ["de"], "tatoeba_pairs": 30, "miracl_languages": ["sw"], "bootstrap_samples": 50,
             "seeds": [13]}
TRAIN = {"steps": 2, "batch_size": 4, "max_seq_length": 32, "precision": "fp32", "checkpoint_every": 1}


def _fake_hub_model(hub, repo: str, tmp_path) -> None:
    """A tiny random XLM-R with the e5 (XLM-R) tokenizer, laid out as a cached hub snapshot of ``repo``."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    tokenizer = offline_tokenizer()
    src = tmp_path / "src"
    cfg = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=514)
    XLMRobertaModel(cfg, add_pooling_layer=False).save_pretrained(src)
    tokenizer.save_pretrained(src)
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("0" * 40)
    shutil.copytree(src, root / "snapshots" / ("0" * 40))


def test_paper_profile_runs_end_to_end_offline(tmp_path, monkeypatch, shared_data):
    import huggingface_hub.constants as hc
    import pandas as pd

    from xlir_utils import config, data, reporting, seed_statistics, systems
    from xlir_utils.large_scale import run_large_scale

    hub = tmp_path / "hub"
    _fake_hub_model(hub, "xlm-roberta-base", tmp_path)
    offline = tmp_path / "offline"
    offline.mkdir()
    for name in ("lareqa", "tatoeba-laser"):
        (offline / name).symlink_to(shared_data / name)
    write_fixture(offline, langs=tuple(LANGS))
    mewsli = write_mewsli(offline)
    shutil.copy(mewsli / "wikinews_mentions-dev.jsonl", mewsli / "wikinews_mentions-test.jsonl")
    write_miracl(offline, "sw")
    isolated_project(tmp_path, monkeypatch, offline)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    # training: the paper profile's entry point, mMARCO pairs, two gloo processes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XLIR_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "xlir_utils.training", "--profile", "paper", "--sampling", "hybrid", "--train", json.dumps(TRAIN),
           "--profile-overrides", json.dumps(OVERRIDES)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    record = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    assert record["run"] == "full-hybrid-s13" and record["world_size"] == 2 and record["steps"] == 2

    # evaluation as notebook 04 runs it
    profile = config.load("paper").replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in OVERRIDES.items()},
                                           train=TRAIN)
    assert profile.train_dataset == "mmarco" and profile.large_scale == ("mewsli-x", "miracl")
    system_list = systems.all_systems(profile)
    assert [(s.label, s.spec.family, s.spec.sampling) for s in system_list] == [
        ("xlm-roberta-base", "zero-shot", None), ("full-hybrid-s13", "full", "hybrid")]
    rsets = {name: data.retrieval_set(profile, name) for name in profile.eval_datasets}
    assert set(rsets) == {"xquad-r", "mlqa-r"}  # both zero-shot in paper: nothing is skipped
    table, per_query, values = systems.evaluate_systems(profile, system_list, rsets)
    tatoeba = {lang: data.tatoeba_pairs(lang).head(profile.tatoeba_pairs) for lang in profile.tatoeba_languages}
    tat_table, tat_values = systems.evaluate_tatoeba_systems(profile, system_list, tatoeba)
    table = pd.concat([table, tat_table], ignore_index=True)
    seed_means, _ = seed_statistics.seed_summary(values + tat_values, n_boot=profile.bootstrap_samples,
                                                 seed=profile.seed, comparisons=reporting.headline_comparisons(table, profile.train.alpha))
    t1 = reporting.table1_with_intervals(seed_means, "mlqa-r", baselines=profile.baselines)
    assert len(t1) == 2
    xr = reporting.xtreme_r_table(seed_means, profile.baselines)
    assert {"Tatoeba acc (en→xx)", "LAReQA mAP@20"} <= set(xr.columns) and len(xr) == 2
    large = run_large_scale(profile, system_list)
    assert set(large.dataset) == {"mewsli-x", "miracl"}
    miracl = large[(large.dataset == "miracl") & (large.lang == "sw")]
    assert set(miracl.metric) == {"ndcg@10", "recall@100"} and miracl.value.between(0, 1).all()
    assert len(miracl) == 2 * len(system_list)
    mewsli = large[(large.dataset == "mewsli-x") & (large.lang == "all")]
    assert len(mewsli) == len(system_list) and mewsli.value.between(0, 1).all()
