"""``python -m fashionnet.data.synthetic``: the same as the ``fashionnet-synth`` command."""

from fashionnet.data.synthetic.cli import main

raise SystemExit(main())
