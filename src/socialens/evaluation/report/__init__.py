"""Reports rebuilt from a run dir's files: report.html (self-contained), report.md, report.json."""

from socialens.evaluation.report.build import build_report

__all__ = ["build_report"]
