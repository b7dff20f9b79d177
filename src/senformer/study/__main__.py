"""``python -m senformer.study evaluate OUT SEED``: the study's evaluation job, run as a subprocess."""

import sys

from .evaluation import main

sys.exit(main())
