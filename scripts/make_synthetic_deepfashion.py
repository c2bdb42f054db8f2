#!/usr/bin/env python
"""Generate the synthetic DeepFashion benchmark (In-shop and Consumer-to-shop layouts, and a
style-shift Consumer-to-shop test set in held-out styles).

    python scripts/make_synthetic_deepfashion.py --out data/synth [--size default] [--seed 0]
        [--workers N] [--preview sheet.png] [--backgrounds DIR]

A thin wrapper around :func:`fashionnet.data.synthetic.main`; see that module for what is written.
"""

import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.data.synthetic import main  # noqa: E402
from fashionnet.data.synthetic.cli import get_args_parser  # noqa: E402,F401  (tests/test_cli_vocabulary.py)

if __name__ == "__main__":
    sys.exit(run_main(main))
