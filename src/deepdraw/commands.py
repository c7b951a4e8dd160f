"""Subcommands of the later stages (train, evaluate, search, activations, svm, rsa, tuning).

Each stage adds one function here that registers its subparsers; :mod:`deepdraw.cli` calls them all.
"""

from __future__ import annotations

import argparse

from .cliargs import add_config_args, add_stage_args, config_from_args, run_stage_command
from .errors import DeepDrawError


def _svm(args: argparse.Namespace) -> None:
    run_stage_command(args, "svm")


def _rsa(args: argparse.Namespace) -> None:
    run_stage_command(args, "rsa")


def _tuning(args: argparse.Namespace) -> None:
    run_stage_command(args, "tuning")


def _report(args: argparse.Namespace) -> None:
    from .paths import RunPaths

    cfg = run_stage_command(args, "report")
    print(RunPaths.of(cfg).report / "index.html")


def _muscles_build(args: argparse.Namespace) -> None:
    from .dataset.muscles import build_fast_engine

    cfg = config_from_args(args)
    if args.refine_ratio and not 2 <= args.refine_ratio <= 16:
        raise DeepDrawError(f"--refine-ratio: got {args.refine_ratio}; expected 0 (no level 2) or 2-16")
    out = build_fast_engine(
        cfg.muscles.model or None,
        args.table or cfg.muscles.table or None,
        workers=args.workers or 0,
        overwrite=args.overwrite,
        quiet=cfg.run.quiet,
    )
    if args.refine_ratio:
        from .dataset.muscles.refine import refine_fast_engine

        out = refine_fast_engine(
            out,
            out,
            ratio=args.refine_ratio,
            model_path=cfg.muscles.model or None,
            workers=args.workers or 0,
            overwrite=True,
            quiet=cfg.run.quiet,
        )
    print(out)


def _muscles_refine(args: argparse.Namespace) -> None:
    from .dataset.muscles.refine import refine_fast_engine

    cfg = config_from_args(args)
    src = args.table or cfg.muscles.table or None
    out = refine_fast_engine(
        src,
        args.output or src,
        ratio=args.ratio,
        model_path=cfg.muscles.model or None,
        workers=args.workers or 0,
        overwrite=args.overwrite,
        quiet=cfg.run.quiet,
    )
    print(out)


def _muscles_validate(args: argparse.Namespace) -> None:
    import json

    from .dataset.muscles import validate_fast_engine

    cfg = config_from_args(args)
    res = validate_fast_engine(args.table or cfg.muscles.table or None, n_traj=args.n, quiet=cfg.run.quiet)
    print(json.dumps({k: v for k, v in res.items() if isinstance(v, int | float | str)}, indent=1))


def add_analysis_commands(sub, ds) -> None:
    m = ds.add_parser("muscles", help="the fast muscle-length engine: build it from OpenSim, validate it")
    msub = m.add_subparsers(dest="muscles_cmd", required=True, metavar="ACTION")
    p = msub.add_parser(
        "build", help="tabulate fiber lengths from the OpenSim model (about 30 min on 2 cores)"
    )
    add_config_args(p)
    p.add_argument("--table", help="output file (default: data/muscles/fast_engine.h5)")
    p.add_argument("--workers", type=int, default=0, help="OpenSim worker processes (default: one per core)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--refine-ratio",
        type=int,
        default=4,
        help="level 2: fine steps per cell for the pairs without a trusted stencil (0: none; default 4)",
    )
    p.set_defaults(func=_muscles_build)
    p = msub.add_parser(
        "refine",
        help="add (or redo) the level-2 tables of a fast engine (about 15 min on 2 cores)",
    )
    add_config_args(p)
    p.add_argument("--table", help="fast-engine file read (default: data/muscles/fast_engine.h5)")
    p.add_argument("--output", help="file written (default: --table, which needs --overwrite)")
    p.add_argument("--ratio", type=int, default=4, help="fine steps per level-1 cell (2-16; default 4)")
    p.add_argument("--workers", type=int, default=0, help="OpenSim worker processes (default: one per core)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_muscles_refine)
    p = msub.add_parser("validate", help="fast vs exact (OpenSim) engine on dataset-like trajectories")
    add_config_args(p)
    p.add_argument("--table", help="fast-engine file (default: the shipped one)")
    p.add_argument("--n", type=int, default=200, help="trajectories compared")
    p.set_defaults(func=_muscles_validate)

    p = sub.add_parser("svm", help="stage 2: pairwise / one-vs-one linear SVMs and linear TDT decoding")
    add_stage_args(p, parallel=True)
    p.set_defaults(func=_svm)
    p = sub.add_parser("rsa", help="stage 4: RDMs vs the category oracle, CKA, t-SNE, population decoding")
    add_stage_args(p)
    p.set_defaults(func=_rsa)
    p = sub.add_parser("tuning", help="stage 5: single-unit tuning curves, preferred directions, invariance")
    add_stage_args(p)
    p.set_defaults(func=_tuning)
    p = sub.add_parser("report", help="HTML report of a run (paper figures, paper vs this run, provenance)")
    add_stage_args(p)
    p.set_defaults(func=_report)


def _nn_commands(sub, ds) -> None:
    from .nn.cli import add_commands

    add_commands(sub, ds)


def _zoo_commands(sub, ds) -> None:
    from .zoo.cli import add_commands

    add_commands(sub, ds)


def _encode_commands(sub, ds) -> None:
    from .encode.cli import add_commands

    add_commands(sub, ds)


COMMAND_GROUPS = (_nn_commands, add_analysis_commands, _zoo_commands, _encode_commands)
"""The functions adding the later stages' subcommands, in help order."""


def add_commands(sub: argparse._SubParsersAction, ds: argparse._SubParsersAction) -> None:
    """Add every subcommand of :data:`COMMAND_GROUPS` to the ``deepdraw`` parser."""
    for group in COMMAND_GROUPS:
        group(sub, ds)
