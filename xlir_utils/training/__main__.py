"""``python -m xlir_utils.training``: notebook 02's training from the command line (:mod:`.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    main(sys.argv[1:])
