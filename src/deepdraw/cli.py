"""The ``deepdraw`` command: one subcommand per stage, each driven by a TOML config.

Run ``deepdraw COMMAND --help`` for the options of a command; ``docs/`` has a page per stage.
Errors caused by input (a file, a config key, an argument) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .cliargs import add_config_args, add_stage_args, config_from_args, run_stage_command
from .errors import DeepDrawError

log = logging.getLogger("deepdraw")


# --- command implementations -------------------------------------------------------------------


def _dataset_stage(stage: str) -> Callable[[argparse.Namespace], None]:
    def cmd(args: argparse.Namespace) -> None:
        from .paths import RunPaths
        from .pipeline import STAGES, external_dataset

        cfg = config_from_args(args)
        if external_dataset(cfg):
            why = (
                f"key 'run.dataset_dir' is '{cfg.run.dataset_dir}' (another run's dataset)"
                if cfg.run.dataset_dir
                else "it has no dataset sections ([characters], [startpoints], [kinematics], [muscles], "
                "[assembly]), so it uses a dataset made by another config"
            )
            raise DeepDrawError(
                f"{cfg.source}: {why}; 'deepdraw dataset {stage}' makes datasets only with a config that "
                "defines one: add the dataset sections (an empty [characters] takes the defaults) or use "
                "the config that made the dataset"
            )
        run_stage_command(args, stage, command=f"dataset {stage}", cfg=cfg)
        outs = STAGES[stage].outputs(cfg)
        log.info("%s: %d output file(s) in %s", stage, len(outs), RunPaths.of(cfg).root)

    cmd.__doc__ = f"``deepdraw dataset {stage}``: the pipeline's {stage} stage alone."
    return cmd


def cmd_inspect(args: argparse.Namespace) -> None:
    from .dataset.inspect import inspect_sample, summary_figure

    cfg = config_from_args(args)
    out = (
        summary_figure(cfg, args.png)
        if args.summary
        else inspect_sample(cfg, args.sample, args.png, args.source)
    )
    print(out)


def cmd_check(args: argparse.Namespace) -> None:
    import json

    from .dataset.checks import muscle_jumps
    from .paths import RunPaths

    cfg = config_from_args(args)
    rp = RunPaths.of(cfg)
    files = [Path(f) for f in args.files] or [rp.pcrt_train, rp.pcrt_test]
    reports = [muscle_jumps(f, args.jump_mm, args.ratio) for f in files]
    if args.json:
        print(json.dumps(reports, indent=1))
    for r in reports:
        print(
            f"{r['file']}: {r['samples_with_jumps']} of {r['n_samples']} samples with single-frame muscle-length "
            f"jumps >= {r['jump_mm']:g} mm (largest {r['largest_mm']:.1f} mm)"
            + (f"; samples per muscle: {r['by_muscle']}" if r["by_muscle"] else "")
        )
    if args.strict and any(r["samples_with_jumps"] for r in reports):
        raise DeepDrawError(
            "dataset check: muscle-length jumps found (see above); --strict makes them an error"
        )


def cmd_pipeline(args: argparse.Namespace) -> None:
    from .pipeline import run_pipeline, status_details

    cfg = config_from_args(args)
    if args.status:
        for k, (state, reasons) in status_details(cfg).items():
            print(
                f"{k:14s} {state}" + (f"  ({'; '.join(reasons)})" if reasons and state != "missing" else "")
            )
        return
    recs = run_pipeline(cfg, only=args.only.split(",") if args.only else None, force=args.force)  # locks
    for k, r in recs.items():
        what = "existing dataset" if r.get("external") else "skipped (up to date)"
        log.info("%-14s %s", k, what if r.get("skipped") else f"{r['wall_s']:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="deepdraw", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--version", action="version", version=f"deepdraw {__version__}")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ds = sub.add_parser("dataset", help="stage 1: the PCRT dataset").add_subparsers(
        dest="sub", required=True, metavar="STEP"
    )
    for stage, parallel, text in (
        ("characters", False, "UCI character trajectories -> characters.h5"),
        ("startpoints", False, "start points of the writing planes -> startpoints.h5"),
        ("kinematics", True, "augmented candidates + inverse kinematics -> candidates/shard_*.h5"),
        ("assemble", True, "select, place in 320 frames, spindle inputs -> pcrt_train.h5, pcrt_test.h5"),
    ):
        p = ds.add_parser(
            stage,
            help=text,
            description=f"{text}. The pipeline's '{stage}' stage alone (deepdraw pipeline CONFIG --only "
            f"{stage}): the same checks and stamps; outputs of another config are never overwritten "
            "without --force.",
        )
        add_stage_args(p, parallel=parallel)
        if stage in ("characters", "startpoints"):
            p.add_argument("--overwrite", dest="force", action="store_true", help="the same as --force")
        p.set_defaults(func=_dataset_stage(stage))
    p = ds.add_parser("inspect", help="PNG of one sample (pen path to inputs) or of the dataset summary")
    add_config_args(p)
    p.add_argument("--sample", type=int, default=0, help="candidate id, or row of the train/test file")
    p.add_argument("--source", choices=["candidates", "train", "test"], default="candidates")
    p.add_argument("--summary", action="store_true", help="dataset summary of the PCRT files instead")
    p.add_argument("--png", help="output PNG (default: <out_dir>/figures/inspect_<source>_<sample>.png)")
    p.set_defaults(func=cmd_inspect)

    p = ds.add_parser(
        "check",
        help="report single-frame muscle-length jumps (MoBL-ARMS wrapping discontinuities) in PCRT files",
        description="Reads muscle_coords of the run's pcrt_train.h5 and pcrt_test.h5 (or FILES) and counts "
        "steps between two frames of at least --jump-mm that are also --ratio times both neighbouring "
        "steps (docs/dataset.md, 'Checking a dataset').",
    )
    add_config_args(p)
    p.add_argument("--file", dest="files", action="append", default=[], help="a PCRT file (repeatable)")
    p.add_argument("--jump-mm", type=float, default=5.0, help="smallest step counted, mm (default 5)")
    p.add_argument("--ratio", type=float, default=4.0, help="times both neighbouring steps (default 4)")
    p.add_argument("--json", action="store_true", help="also print the full reports (rows, frames) as JSON")
    p.add_argument("--strict", action="store_true", help="exit with status 2 when any jump is found")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("pipeline", help="every stage in order, cached and resumable")
    add_config_args(p, parallel=True)
    p.add_argument("--only", help="comma-separated stage names")
    p.add_argument(
        "--status",
        action="store_true",
        help="show which stages are done, to do, partial, stale or damaged, and why",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute stages whose config or inputs changed, deleting their earlier outputs "
        "(without it the pipeline stops and says what would be lost)",
    )
    p.set_defaults(func=cmd_pipeline)

    from .commands import add_commands

    add_commands(sub, ds)
    return ap


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("matplotlib", "PIL", "distributed", "fontTools"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    _setup_logging(args.quiet, args.verbose)
    try:
        args.func(args)
    except DeepDrawError as e:
        print(f"deepdraw: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from .store import disk_full_error, is_disk_full

        if not is_disk_full(e):
            raise
        print(f"deepdraw: error: {disk_full_error(e.filename or '.')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepdraw: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
