"""Every failure is one clear message: the kit's errors share one base, every command line shows
them as one line (exit code 2; ``XLIR_DEBUG=1`` for the traceback) and applies ``XLIR_THREADS``;
the explorer checks its arguments and keeps typed questions out of the embedding cache; bad JSON
lines and missing offline data are named precisely."""
from __future__ import annotations

import ast
import gzip
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import isolated_project, random_unit_embeddings
from helpers import write_mewsli, write_miracl

from xlir_utils import cli, config, environment, paths
from xlir_utils.errors import SettingsError, XlirError

PACKAGE = paths.project_root() / "xlir_utils"


def _entry_point(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    for var in ("XLIR_DEBUG", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var not in env:
            full.pop(var, None)
    return subprocess.run([sys.executable, "-m", module, *args], env=full, capture_output=True, text=True,
                          timeout=300)


# ------------------------------------------------------------------ one base class
def test_the_kits_errors_share_one_base():
    from xlir_utils.data import ChecksumMismatch, DataError, DataUnavailable, LeakageError
    from xlir_utils.encoders.registry import EncoderCacheError, EncoderNotFound, HubModelUnavailable

    for cls in (DataError, ChecksumMismatch, DataUnavailable, LeakageError, HubModelUnavailable,
                EncoderCacheError, EncoderNotFound, SettingsError):
        assert issubclass(cls, XlirError), cls
    # the bases callers already catch are kept
    assert issubclass(SettingsError, ValueError) and issubclass(LeakageError, RuntimeError)
    assert issubclass(EncoderCacheError, OSError) and issubclass(EncoderNotFound, FileNotFoundError)


def test_bad_settings_raise_settings_errors(monkeypatch):
    monkeypatch.setenv("XLIR_PROFILE", "bogus")
    with pytest.raises(SettingsError, match="'bogus'.*smoke, quick, paper"):
        config.load()
    monkeypatch.setenv("XLIR_PROFILE", "smoke")
    monkeypatch.setenv("XLIR_SEEDS", "13,x")
    with pytest.raises(SettingsError, match="XLIR_SEEDS"):
        config.load()
    monkeypatch.delenv("XLIR_SEEDS")
    monkeypatch.setenv("XLIR_THREADS", "two")
    with pytest.raises(SettingsError, match="XLIR_THREADS='two'"):
        environment.requested_threads()
    with pytest.raises(SettingsError, match=r"no field 'stepz'.*steps, batch_size"):
        config.load("smoke").replace(train={"stepz": 4})
    with pytest.raises(SettingsError, match=r"Profile has no field 'encodr'.*encoder"):
        config.load("smoke").replace(encodr="x")


# ------------------------------------------------------------------ the command-line wrapper
def test_a_bad_setting_is_one_line_and_exit_code_2():
    out = _entry_point("xlir_utils.reporting", XLIR_PROFILE="bogus")
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr
    assert [x for x in lines if x.startswith("error:")] == [lines[-2]]
    assert lines[-2].startswith("error: Unknown profile 'bogus'") and "export XLIR_PROFILE=quick" in lines[-2]
    assert lines[-1] == "(set XLIR_DEBUG=1 to see the traceback)"


def test_xlir_debug_shows_the_traceback_and_threads_are_checked_by_training():
    out = _entry_point("xlir_utils.training", "--profile", "smoke", XLIR_THREADS="0", XLIR_DEBUG="1")
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback (most recent call last)" in out.stderr and "SettingsError" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: XLIR_THREADS='0' is not a positive integer")
    assert "XLIR_DEBUG" not in out.stderr.strip().splitlines()[-1]


def test_the_wrapper_applies_xlir_threads_first(monkeypatch):
    import torch

    saved = torch.get_num_threads()
    seen = []
    monkeypatch.setenv("XLIR_THREADS", "1")
    try:
        torch.set_num_threads(2)
        assert cli.run(lambda argv: seen.append((argv, torch.get_num_threads())), ["--x"]) == 0
    finally:
        environment.apply_threads(threads=saved)
    assert seen == [(["--x"], 1)]


def test_interrupts_and_bugs(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert cli.run(interrupted, []) == 130
    assert capsys.readouterr().err.startswith("interrupted")

    def bug(argv):
        return 1 / 0

    with pytest.raises(ZeroDivisionError):  # not the user's to fix: the traceback stays
        cli.run(bug, [])


def test_training_options_fail_as_one_line(capsys):
    from xlir_utils.training.cli import main

    assert cli.run(main, ["--train", "{steps: 4}"]) == 2
    err = capsys.readouterr().err
    assert "error: --train '{steps: 4}' is not valid JSON" in err and '--train \'{"steps": 4}\'' in err
    assert cli.run(main, ["--profile", "smoke", "--train", '{"stepz": 4}']) == 2
    assert "no field 'stepz'" in capsys.readouterr().err
    assert cli.run(main, ["--profile-overrides", "[1]"]) == 2
    assert "--profile-overrides '[1]' is not a JSON object" in capsys.readouterr().err


def test_a_bad_json_line_of_shard_encode_is_named(tmp_path, capsys):
    from xlir_utils.shard_encode import main

    texts = tmp_path / "corpus.jsonl"
    texts.write_text('{"text": "eins"}\n\n{"text": "zwei"\n')
    assert cli.run(main, ["--model", "e5-small-offline", "--texts", str(texts), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{texts}, line 3: not valid JSON" in err
    texts.write_text('{"text": "eins"}\n{"txt": "zwei"}\n')
    assert cli.run(main, ["--model", "e5-small-offline", "--texts", str(texts), "--out", str(tmp_path / "o")]) == 2
    assert "line 2: expected a JSON object with a 'text' string" in capsys.readouterr().err


def _main_blocks(tree: ast.Module) -> list[ast.If]:
    return [n for n in tree.body if isinstance(n, ast.If) and isinstance(n.test, ast.Compare)
            and isinstance(n.test.left, ast.Name) and n.test.left.id == "__name__"]


def test_every_entry_point_goes_through_the_wrapper():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        blocks = _main_blocks(ast.parse(path.read_text()))
        if blocks or path.name == "__main__.py":
            calls = [n for b in blocks for n in ast.walk(b) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Name) and n.func.id == "run"]
            found[str(path.relative_to(PACKAGE))] = bool(calls)
    assert {"training/__main__.py", "reporting/__main__.py", "recipe_study.py", "shard_encode.py"} <= set(found)
    assert all(found.values()), {k: v for k, v in found.items() if not v}


# ------------------------------------------------------------------ the explorer
@pytest.fixture()
def tiny_explorer():
    from xlir_utils.data import RetrievalSet
    from xlir_utils.explorer import Explorer, ExplorerSystem
    from xlir_utils.systems import SystemSpec

    langs = ("de", "en")
    queries = pd.DataFrame({"query_id": ["q0-de", "q0-en", "q1-de", "q1-en"], "question_id": ["q0", "q0", "q1", "q1"],
                            "lang": ["de", "en", "de", "en"],
                            "text": ["Wo liegt Paris?", "Where is Paris?", "Wer?", "Who?"]})
    candidates = pd.DataFrame({"candidate_id": [f"c{i}" for i in range(6)], "lang": ["de", "en"] * 3,
                               "sentence": [f"Satz {i}" if i % 2 == 0 else f"Sentence {i}" for i in range(6)]})
    rset = RetrievalSet("tiny", langs, queries, candidates, [np.array([0, 1]), np.array([0, 1]),
                                                             np.array([2, 3]), np.array([2, 3])])
    systems = []
    for seed, label in enumerate(("A", "B")):
        q, c = random_unit_embeddings(rset, 8, seed)
        systems.append(ExplorerSystem(label, SystemSpec("zero-shot", label), q, c, lambda text, lang, q=q: q[0]))
    return Explorer(rset, systems)


def test_explorer_checks_k(tiny_explorer):
    for bad in (2.5, 0, -1, "3", True, None):
        with pytest.raises(ValueError, match=r"k must be a whole number of at least 1.*got"):
            tiny_explorer.explore(0, ["A"], k=bad)
    assert len(tiny_explorer.explore(0, ["A"], k=np.int64(2))) == 2


def test_explorer_takes_one_language_as_a_string(tiny_explorer):
    one = tiny_explorer.explore(0, ["A"], k=6, languages="de")
    assert set(one.lang) == {"de"} and len(one) == 3 and one.attrs["languages"] == ("de",)
    assert one.equals(tiny_explorer.explore(0, ["A"], k=6, languages=["de"]))
    ranks = tiny_explorer.parallel_answer_ranks(0, "A", languages="de")
    assert ranks.set_index("lang")["A"].isna().tolist() == [False, True]
    with pytest.raises(ValueError, match=r"no candidates in \['xx'\] in tiny; choose from \['de', 'en'\]"):
        tiny_explorer.explore(0, ["A"], languages="xx")
    with pytest.raises(ValueError, match=r"languages must be names \(strings\), got \[1\]"):
        tiny_explorer.explore(0, ["A"], languages=[1])


def test_explorer_checks_systems(tiny_explorer):
    from xlir_utils.explorer_view import compare

    for empty in ([], (), ""):
        with pytest.raises(ValueError, match=r"at least one system.*\['A', 'B'\]"):
            tiny_explorer.explore(0, empty)
    with pytest.raises(KeyError) as err:
        tiny_explorer.explore(0, ["A", "C"])
    assert isinstance(err.value, ValueError)
    assert str(err.value) == "no system 'C' in the explorer; choose from ['A', 'B']"
    assert set(tiny_explorer.explore(0, "B", k=2).system) == {"B"}  # one label, not its letters
    assert compare(tiny_explorer, 1, "A", k=3, languages="en").systems == ["A"]


def _disk_files(root: Path) -> int:
    """Files under the cache folder, the CPU precision verdict (``precision.json``) aside."""
    return sum(1 for p in root.rglob("*") if p.is_file() and p.name != "precision.json") if root.exists() else 0


@pytest.mark.slow
def test_typed_questions_stay_out_of_the_disk_cache(tiny_encoder, tmp_path, monkeypatch):
    """A typed question reaches the kit's ``encode`` without its disk cache; the set's own
    embeddings still use it (so the count below can see a cache file)."""
    from xlir_utils.encoders import encode
    from xlir_utils.explorer import _from_system
    from xlir_utils.systems import System, SystemSpec

    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path / "cache"))
    model = tiny_encoder()

    def run(texts, langs, kind, cache=True):
        return encode(model, list(texts), kind, batch_tokens=512, cache=cache, show_progress=False)

    system = System("tiny", SystemSpec("zero-shot", "tiny"), "fp", run)
    q = run(["Wo liegt Paris?"], ["de"], "query")
    stored = _disk_files(tmp_path / "cache")
    assert stored >= 1  # the stored path writes the cache
    explorer_system = _from_system(system, q, q)
    v = explorer_system.encode_query("Wer schrieb Faust?", "de")
    assert v.shape == (q.shape[1],) and _disk_files(tmp_path / "cache") == stored


@pytest.mark.slow
def test_discovered_systems_let_typed_questions_skip_the_cache(tiny_encoder, tmp_path, monkeypatch):
    from xlir_utils.encoders import encode
    from xlir_utils.explorer import _from_system
    from xlir_utils.systems import SystemSpec, encoder_system

    monkeypatch.setenv("XLIR_CACHE_DIR", str(tmp_path / "cache"))
    model = tiny_encoder()
    system = encoder_system("tiny", SystemSpec("zero-shot", "tiny"), lambda: model, 512)
    q = encode(model, ["Wo liegt Paris?"], "query", cache=False, show_progress=False)
    _from_system(system, q, q).encode_query("Wer schrieb Faust?", "de")
    assert _disk_files(tmp_path / "cache") == 0


# ------------------------------------------------------------------ data messages
def test_a_bad_json_line_is_named_by_its_line_number(tmp_path, monkeypatch):
    from xlir_utils.data import DataError, mewsli_x, miracl

    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    folder = write_mewsli(tmp_path / "offline")
    entities = folder / "candidate_set_entities.jsonl"
    good = entities.read_text()
    assert len(mewsli_x.mewsli_candidates()) == 2
    entities.write_text(good + "\n" + '{"entity_id": "Q1", "description": "x"\n')  # line 4 (3 is empty)
    with pytest.raises(DataError, match=r"candidate_set_entities\.jsonl, line 4: not valid JSON \(.*column"):
        mewsli_x.mewsli_candidates()
    entities.write_text(good + '{"description": "no id"}\n')
    with pytest.raises(DataError, match=r"candidate_set_entities\.jsonl, line 3: an entity lacks 'entity_id'"):
        mewsli_x.mewsli_candidates()
    entities.write_text(good + "[1, 2]\n")
    with pytest.raises(DataError, match=r"line 3: expected a candidate entity"):
        mewsli_x.mewsli_candidates()

    write_miracl(tmp_path / "offline")
    docs = tmp_path / "offline/miracl-corpus/miracl-corpus-v1.0-sw/docs-0.jsonl.gz"
    with gzip.open(docs, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    with gzip.open(docs, "wt", encoding="utf-8") as handle:
        handle.write("\n".join([lines[0], lines[1][:-5], lines[2]]) + "\n")
    with pytest.raises(DataError, match=r"docs-0\.jsonl\.gz, line 2: not valid JSON"):
        list(miracl.miracl_corpus("sw"))


def test_an_empty_xlir_data_dir_is_named_with_what_it_lacks(tmp_path, monkeypatch):
    from xlir_utils.data import DataUnavailable, fetch

    empty = tmp_path / "empty"
    empty.mkdir()
    isolated_project(tmp_path, monkeypatch, empty)
    with pytest.raises(DataUnavailable) as err:
        fetch("lareqa/mlqa-r/vi.json")
    message = str(err.value)
    assert f"XLIR_DATA_DIR is already set, to {empty.resolve()} (an empty folder)" in message
    assert f"{empty.resolve() / 'lareqa/mlqa-r/vi.json'} is not there" in message
    assert "Set XLIR_DATA_DIR" not in message and "XLIR_OFFLINE" in message

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.delenv("XLIR_OFFLINE")
    monkeypatch.setattr("urllib.request.urlopen", unreachable)
    with pytest.raises(DataUnavailable, match=r"Could not download lareqa/mlqa-r/vi\.json.*XLIR_DATA_DIR is "
                                              r"already set, to .*empty \(an empty folder\)"):
        fetch("lareqa/mlqa-r/vi.json")
    monkeypatch.delenv("XLIR_DATA_DIR")
    with pytest.raises(DataUnavailable, match=r"XLIR_DATA_DIR is not set: set it to a folder of the raw files in the offline layout"):
        fetch("lareqa/mlqa-r/vi.json")


def test_mewsli_x_missing_names_the_data_dir(tmp_path, monkeypatch):
    from xlir_utils.data import DataUnavailable, mewsli_x

    (tmp_path / "offline").mkdir()
    isolated_project(tmp_path, monkeypatch, tmp_path / "offline")
    with pytest.raises(DataUnavailable, match=r"XLIR_DATA_DIR is already set, to .*offline \(an empty folder\)"):
        mewsli_x.mewsli_candidates()


# ------------------------------------------------------------------ the encoder cache
@pytest.mark.slow
def test_an_unusable_cache_folder_is_named_with_the_fix(tmp_path, monkeypatch):
    from xlir_utils.encoders import load_encoder
    from xlir_utils.encoders.registry import EncoderCacheError

    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XLIR_CACHE_DIR", str(not_a_folder))
    with pytest.raises(EncoderCacheError) as err:
        load_encoder("e5-small-offline")
    message = str(err.value)
    assert f"cache folder {not_a_folder.resolve()}" in message and f"XLIR_CACHE_DIR={str(not_a_folder)!r}" in message
    assert "set XLIR_CACHE_DIR to a writable folder" in message
    assert isinstance(err.value, OSError)  # what callers caught before
