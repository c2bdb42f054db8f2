#!/usr/bin/env python
"""Train FashionNet. All options: python scripts/train_fashionnet.py --help (see fashionnet/training/args.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fashionnet.training.args import get_args_parser  # noqa: E402,F401  (get_args_parser: tests/test_cli_vocabulary.py)
from fashionnet.training.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())  # the fashionnet-train command: a refused input as one line (fashionnet.cli.errors)
