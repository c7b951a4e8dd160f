"""HTML report of a run: the paper's figures from this run, paper vs this run, provenance."""

from .build import build_report

__all__ = ["build_report"]
