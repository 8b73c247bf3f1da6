"""``python -m xlir_utils.reporting [profile]`` (``make figures``): every figure and table from
``results/``, and (``quick``) the README's results block."""
import sys

from .. import paths
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


if __name__ == "__main__":
    sys.exit(run(main))
