"""The README's numbers are the ones in results/ (the committed quick-profile tables)."""
import re

import numpy as np
import pandas as pd
import pytest

from xlir_utils import outputs, paths, reporting


@pytest.mark.parametrize("markers", list(reporting.BLOCKS))
def test_readme_generated_blocks_match_results(markers):
    if not (paths.results_dir("quick") / outputs.SEED_MEANS_FILE).is_file():
        pytest.skip("no seeded quick-profile results committed yet (make reproduce writes them)")
    text = (paths.project_root() / "README.md").read_text()
    begin, end = markers
    block = text[text.index(begin) + len(begin): text.index(end)].strip()
    assert block == reporting.BLOCKS[markers]("quick")


def test_readme_opens_with_the_two_commands():
    lines = (paths.project_root() / "README.md").read_text().splitlines()
    commands = [line.split("#")[0].strip() for line in lines[:4] if line.startswith("make ")]
    assert commands == ["make reproduce", "make test"]


STALE = (  # words a reader cannot follow: the kit's own work process, not what it measured
    r"\bissues?\b", r"\bsessions?\b", r"by the [a-z]+'s rule", r"a one-off layer probe", r"4-nat bar",
    r"stage B\)\?",  # a question whose premise (the freezing check on dev) never ran
    r"script not committed",
    r"shared control \S* ?matches",  # a premise the results contradict (it is .069 better)
    r"earlier versions? of the kit", r"was tried first", r"the rule used before", r"\bour machines\b",
    r"kit was built", r"the head used before",
)


def test_no_words_about_how_the_kit_was_made():
    """The README, the notebooks and the package speak of the kit alone."""
    root = paths.project_root()
    files = [root / "README.md", root / "notebooks" / "README.md", *sorted((root / "notebooks").glob("0*.ipynb")),
             *sorted((root / "xlir_utils").rglob("*.py")), *sorted((root / "benchmarks").glob("*.py"))]
    found = [f"{path.relative_to(root)}: {match.group(0)!r}" for path in files
             for pattern in STALE for match in re.finditer(pattern, path.read_text(encoding="utf-8"), re.IGNORECASE)]
    assert not found, found


# ------------------------------------------------------------ the numbers of the results prose
NUMBER = r"[+−-]?(?:\d[\d,]*)?\.?\d+"
WITH_INTERVAL = re.compile(rf"({NUMBER})\s*(?:%|points)?\s*\[({NUMBER}),\s*({NUMBER})\]")
DECIMAL = re.compile(r"(?<![\w.\[])[+−-]?\d*\.\d{2,}(?!\w)")


def _value(text: str) -> float:
    return float(text.replace("−", "-").replace(",", "").replace("+", ""))


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def results_prose(readme: str) -> str:
    """The README's results sections without their generated blocks and tables (checked elsewhere)."""
    section = readme[readme.index("## Results (quick profile)"): readme.index("## Scaling out")]
    section = re.sub(r"<!-- [A-Z]+:BEGIN.*?:END -->", "", section, flags=re.S)
    return "\n".join(line for line in section.splitlines() if not line.startswith("|"))


def results_tables() -> dict[str, np.ndarray]:
    """Every numeric table under results/, by path; a per-seed table also as its seed means."""
    root = paths.project_root()
    out = {}
    for path in sorted(paths.results_dir("quick").rglob("*")):
        if path.suffix == ".csv":
            df = pd.read_csv(path)
        elif path.suffix == ".parquet" and not path.name.startswith(("per_query", "text_lengths")):
            df = pd.read_parquet(path)
        else:
            continue
        name = str(path.relative_to(root))
        out[name] = df.select_dtypes("number").to_numpy(dtype=float)
        if {"seed", "system"} <= set(df.columns):
            keys = [c for c in df.columns if c != "seed" and not pd.api.types.is_numeric_dtype(df[c]) and c != "model"]
            means = df.drop(columns=["seed"]).groupby(keys, dropna=False).mean(numeric_only=True)
            out[name + " (seed means)"] = means.to_numpy(dtype=float)
    return out


def _in_one_row(texts: tuple[str, str, str], table: np.ndarray) -> bool:
    """An estimate and its interval, as printed, in one row of ``table`` (or their negation, for
    a decrease written as a positive amount; or in per cent)."""
    values = [_value(t) for t in texts]
    for scale in (1, 100):
        for est, lo, hi in (values, [-values[0], -values[2], -values[1]]):
            hit = np.ones(len(table), bool)
            for target, text in zip((est, lo, hi), texts):
                d = _decimals(text)
                hit &= np.isclose(np.round(table * scale, d), target, atol=10 ** -d / 10).any(axis=1)
            if hit.any():
                return True
    return False


def _somewhere(text: str, tables: dict[str, np.ndarray]) -> bool:
    d, x = _decimals(text), abs(_value(text))
    return any(np.isclose(np.round(np.abs(t) * scale, d), x, atol=10 ** -d / 10).any()
               for t in tables.values() if t.size for scale in (1, 100))


def summary_tables(tables: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The CSV summaries among ``tables``: where an estimate with its interval must be one row."""
    return [t for name, t in tables.items() if ".parquet" not in name and t.size]


def unmatched_numbers(prose: str, tables: dict[str, np.ndarray]) -> list[str]:
    """Each estimate with an interval must be one row of some results table (the summaries are
    CSV); each other number with two or more decimals must be in the tables its paragraph cites
    (or, citing none, any)."""
    summaries = summary_tables(tables)
    missing = []
    for paragraph in re.split(r"\n(?=\s*(?:\*|\d+\.) |\n)", prose):
        cited = [f for ref in re.findall(r"results/[\w./{},-]+\w", paragraph) for f in _expand(ref)]
        pool = {k: v for k, v in tables.items() if any(k.startswith(c) for c in cited)} or tables
        for m in WITH_INTERVAL.finditer(paragraph):
            if not any(_in_one_row(m.groups(), t) for t in summaries):
                missing.append(m.group(0))
        for m in DECIMAL.finditer(WITH_INTERVAL.sub(" ", paragraph)):
            if not _somewhere(m.group(0), pool):
                missing.append(f"{m.group(0)} (in {', '.join(cited) or 'results/'})")
    return missing


def _expand(ref: str) -> list[str]:
    m = re.match(r"(.*)\{(.*)\}(.*)", ref)
    return [m.group(1) + x + m.group(3) for x in m.group(2).split(",")] if m else [ref]


@pytest.fixture(scope="module")
def prose_and_tables():
    if not (paths.results_dir("quick") / outputs.SEED_MEANS_FILE).is_file():
        pytest.skip("no seeded quick-profile results committed yet (make reproduce writes them)")
    return results_prose((paths.project_root() / "README.md").read_text()), results_tables()


def test_readme_prose_numbers_come_from_results(prose_and_tables):
    prose, tables = prose_and_tables
    assert len(WITH_INTERVAL.findall(prose)) > 50 and len(DECIMAL.findall(prose)) > 100
    assert not unmatched_numbers(prose, tables)


def test_a_changed_readme_number_is_caught(prose_and_tables):
    """The check above can fail: an estimate or an interval end moved by one unit of its last
    printed digit is reported, unless the moved interval happens to be another row of the
    summaries (then no check of numbers alone could tell); so is a plain number."""
    prose, tables = prose_and_tables
    summaries = summary_tables(tables)
    checked = 0
    for m in WITH_INTERVAL.finditer(prose):
        if checked >= 6:
            break
        for group in (1, 3):
            text = m.group(group)
            moved = f"{_value(text) + 10 ** -_decimals(text):.{_decimals(text)}f}"
            triple = tuple(moved if g == group else m.group(g) for g in (1, 2, 3))
            if any(_in_one_row(triple, s) for s in summaries):
                continue
            changed = prose[:m.start(group)] + moved + prose[m.end(group):]
            assert unmatched_numbers(changed, tables), f"{text} -> {moved} went unnoticed"
            checked += 1
    assert checked >= 6
    m = re.search(r"\.6484", prose)
    changed = prose[:m.start()] + ".6485" + prose[m.end():]
    assert unmatched_numbers(changed, tables) == [".6485 (in results/code_switching_dev.csv)"]
