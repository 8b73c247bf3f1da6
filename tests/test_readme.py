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
