"""The study report: tables (mean ± std over seeds), figures and ``results.csv`` for a sweep.

``python -m losslands.report multirun/<sweep>`` writes ``REPORT.md``, ``results.csv`` and
``figures/*.png`` into the sweep folder.
"""

from losslands.report.load import Job, load_sweep
from losslands.report.write import write_report

__all__ = ["Job", "load_sweep", "write_report"]
