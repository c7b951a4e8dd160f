"""Subcommands of the later stages (train, evaluate, search, activations, svm, rsa, tuning).

Each stage adds one function here that registers its subparsers; :mod:`deepdraw.cli` calls them all.
"""

from __future__ import annotations

import argparse

from .cli import EXTRA_COMMANDS, _add_config, _config


def _svm(args: argparse.Namespace) -> None:
    from .stages import _svm as run

    run(_config(args))


def _rsa(args: argparse.Namespace) -> None:
    from .stages import _rsa as run

    run(_config(args))


def _tuning(args: argparse.Namespace) -> None:
    from .stages import _tuning as run

    run(_config(args))


def _report(args: argparse.Namespace) -> None:
    from .report.build import build_report

    print(build_report(_config(args)))


def add_analysis_commands(sub, ds) -> None:
    p = sub.add_parser("svm", help="stage 2: pairwise / one-vs-one linear SVMs and linear TDT decoding")
    _add_config(p, parallel=True)
    p.set_defaults(func=_svm)
    p = sub.add_parser("rsa", help="stage 4: RDMs vs the category oracle, CKA, t-SNE, population decoding")
    _add_config(p)
    p.set_defaults(func=_rsa)
    p = sub.add_parser("tuning", help="stage 5: single-unit tuning curves, preferred directions, invariance")
    _add_config(p)
    p.set_defaults(func=_tuning)
    p = sub.add_parser("report", help="HTML report of a run (paper figures, paper vs this run, provenance)")
    _add_config(p)
    p.set_defaults(func=_report)


def _nn_commands(sub, ds) -> None:
    from .nn.cli import add_commands

    add_commands(sub, ds)


EXTRA_COMMANDS.extend([_nn_commands, add_analysis_commands])
