"""``python -m xlir_utils.reporting [profile]`` (``make figures``): every figure and table from
``results/``, and (``quick``) the README's results block."""
import sys

from .. import paths
from ..config import profile_name
from .readme import update_readme
from .redraw import make_figures

name = profile_name(sys.argv[1] if len(sys.argv) > 1 else None)
print("figures written:", ", ".join(make_figures(name)), "->", paths.figures_dir(name))
if name == "quick" and update_readme(name):
    print("README results block updated from results/")
