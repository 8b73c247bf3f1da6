"""The README's numbers are the ones in results/ (the committed quick-profile tables)."""
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
)


def test_no_words_about_how_the_kit_was_made():
    """The README, the notebooks and the package speak of the kit alone."""
    import re

    root = paths.project_root()
    files = [root / "README.md", root / "notebooks" / "README.md", *sorted((root / "notebooks").glob("0*.ipynb")),
             *sorted((root / "xlir_utils").rglob("*.py")), *sorted((root / "benchmarks").glob("*.py"))]
    found = [f"{path.relative_to(root)}: {match.group(0)!r}" for path in files
             for pattern in STALE for match in re.finditer(pattern, path.read_text(encoding="utf-8"), re.IGNORECASE)]
    assert not found, found
