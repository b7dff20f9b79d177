"""``python -m senformer.study evaluate OUT SEED INTO``: the study's evaluation job, run as a subprocess."""

import sys

from .evaluation import main

sys.exit(main())
