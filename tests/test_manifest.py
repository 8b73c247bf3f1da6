"""Result files are recorded with their SHA-256 and the run that wrote them, and never read
unverified: a bit-flipped, truncated or unrecorded table is refused with the file and the fix
(notebooks 01-05, ``make figures``)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from xlir_utils import manifest, outputs, paths
from xlir_utils.errors import DamagedFileError


@pytest.fixture()
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("XLIR_ROOT", str(tmp_path))
    return tmp_path


def _table(n=400):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"system": ["full-hybrid"] * n, "family": "full", "value": rng.random(n),
                         "ci_low": rng.random(n)})


@pytest.mark.parametrize("name", [outputs.EVAL_FILE, outputs.SEED_MEANS_FILE])
def test_a_written_table_reads_back_verified(project, name):
    outputs.save_table(_table(), name, "smoke")
    back = outputs.read_table(name, "smoke")
    assert np.allclose(back.value, _table().value)
    entry = json.loads((paths.results_dir("smoke") / manifest.MANIFEST_NAME).read_text())["files"][name]
    assert entry["writer"] == "notebook 04" and entry["run"] == manifest.RUN_ID and len(entry["sha256"]) == 64


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_table_is_refused_with_the_fix(project, damage):
    """64 flipped bytes inside results/evaluation.parquet used to read back as other numbers."""
    outputs.save_table(_table(), outputs.EVAL_FILE, "smoke")
    path = outputs.table_path(outputs.EVAL_FILE, "smoke")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError) as err:
        outputs.read_table(outputs.EVAL_FILE, "smoke")
    message = str(err.value)
    assert str(path) in message and "git checkout --" in message and "notebook 04" in message


def test_an_unrecorded_table_is_not_trusted(project):
    path = outputs.table_path(outputs.SEED_MEANS_FILE, "smoke")
    path.parent.mkdir(parents=True)
    _table().to_csv(path, index=False)  # written by hand, not by the kit
    with pytest.raises(DamagedFileError, match="not recorded"):
        outputs.read_table(outputs.SEED_MEANS_FILE, "smoke")


def test_tables_of_two_runs_of_one_notebook_are_reported(project):
    """A kill between two writes of a notebook, then a partial rerun, leaves results/ mixed."""
    outputs.save_table(_table(), outputs.EVAL_FILE, "smoke")
    outputs.save_table(_table(), outputs.SEED_MEANS_FILE, "smoke")
    assert manifest.mixed_runs(paths.results_dir("smoke")) == {}
    code = (f"from xlir_utils import outputs; import pandas as pd; "
            f"outputs.save_table(pd.DataFrame({{'a': [1]}}), {outputs.EVAL_FILE!r}, 'smoke')")
    subprocess.run([sys.executable, "-c", code], check=True)  # another process: another run
    assert manifest.mixed_runs(paths.results_dir("smoke")) == {"notebook 04": [outputs.SEED_MEANS_FILE]}


def test_json_results_are_verified_too(project):
    outputs.save_json({"chosen": {"lr": 3e-5}}, outputs.RECIPE_CHOICE_FILE, "smoke")
    assert outputs.read_json(outputs.RECIPE_CHOICE_FILE, "smoke") == {"chosen": {"lr": 3e-5}}
    path = outputs.table_path(outputs.RECIPE_CHOICE_FILE, "smoke")
    path.write_text(path.read_text().replace("3e-05", "1e-04"))
    with pytest.raises(DamagedFileError, match="make recipe-study"):
        outputs.read_json(outputs.RECIPE_CHOICE_FILE, "smoke")


def test_committed_results_match_their_manifest():
    """Every committed result file is recorded, and matches its record."""
    folder = paths.project_root() / "results"
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if p.is_file() and p.name != manifest.MANIFEST_NAME and not p.name.endswith(".lock")
             and p.relative_to(folder).parts[0] not in ("smoke", "paper")}
    recorded = json.loads((folder / manifest.MANIFEST_NAME).read_text())["files"]
    assert files == set(recorded)
    for name in sorted(files):
        manifest.verify(folder, name, outputs.writer_of(name))
