"""``python -m segreg_lite`` is the ``segreg-lite`` command."""
from segreg_lite.cli import main

raise SystemExit(main())
