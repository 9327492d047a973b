"""``python -m edgesiam`` (also what ``torchrun -m edgesiam`` runs)."""

from edgesiam.cli import main

raise SystemExit(main())
