"""``python -m xlir_utils.training``: notebook 02's training from the command line (:mod:`.cli`)."""
import sys

from ..cli import run
from .cli import main

if __name__ == "__main__":
    sys.exit(run(main))
