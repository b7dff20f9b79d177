"""Self-contained HTML reports, and the report of ``senformer demo``.

    page.py            Report: one HTML page of sections, tables and embedded PNG figures (the builder)
    sources.py         what the report reads from a run: JSON files, finished stages, the machine in words
    demo.py            build_study_report: the demo's report, a section per stage and the summary of findings
    recorded.py        the recorded full-width benchmarks and the live attention layer beside them
    accuracy_study.py  the accuracy study's table and finding, read from its study.json

Figures are made with :func:`senformer.plots.new_figure`, below this package.
"""

from .accuracy_study import read_accuracy_study
from .demo import build_study_report
from .page import Report
from .sources import RECORDED_RESULTS, stage_finished

__all__ = ["RECORDED_RESULTS", "Report", "build_study_report", "read_accuracy_study", "stage_finished"]
