"""``python -m xlir_utils.reporting [profile]`` (``make figures``): every figure and table from
``results/``, (``quick``) the README's results block, every runtime text from
``results/runtimes.csv``, and the executed notebooks' prose from the notebooks."""
import sys

from .. import executed_copy, paths, runtimes
from ..cli import run
from ..config import profile_name
from .readme import update_readme
from .redraw import make_figures


def main(argv: list[str]) -> None:
    """Redraw the figures of ``argv[0]`` (default ``XLIR_PROFILE`` or quick; ``make figures``)."""
    name = profile_name(argv[0] if argv else None)
    print("figures written:", ", ".join(make_figures(name)), "->", paths.figures_dir(name))
    if name == "quick" and update_readme(name):
        print("README results block updated from results/")
    for path in runtimes.write_texts():
        print("runtimes written from results/runtimes.csv:", path.relative_to(paths.project_root()))
    written, stale = executed_copy.refresh_prose(name)
    for path in written:
        print("executed copy's prose brought up to date:", path.relative_to(paths.project_root()))
    for message in stale:
        print("warning:", message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(main))
