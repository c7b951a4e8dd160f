"""The ``deepdraw`` command: one subcommand per stage, each driven by a TOML config.

Run ``deepdraw COMMAND --help`` for the options of a command; ``docs/`` has a page per stage.
Errors caused by input (a file, a config key, an argument) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .config import Config, load_config
from .errors import DeepDrawError

log = logging.getLogger("deepdraw")


def _config(args: argparse.Namespace) -> Config:
    sets = getattr(args, "overrides", None) or []
    cfg = load_config(args.config or None, sets) if args.config or sets else Config()
    if getattr(args, "out", None):
        cfg.run.out_dir = args.out
    if args.quiet:
        cfg.run.quiet = True
    if hasattr(args, "scheduler"):  # the parallel flags of _add_config (muscles build has --workers only)
        from .parallel import apply_cli_overrides

        cfg.parallel = apply_cli_overrides(cfg.parallel, args.workers, args.scheduler, args.sync)
    return cfg


@contextmanager
def writing(cfg: Config) -> Iterator[None]:
    """Hold the run folder's lock (:mod:`deepdraw.lock`) while a command writes into ``run.out_dir``."""
    from .lock import run_lock

    with run_lock(cfg.out_dir):
        yield


def add_set_option(p: argparse.ArgumentParser) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable, into ``args.overrides``), on every command reading a config."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key (repeatable); VALUE is a TOML literal or bare text, "
        "e.g. --set train.seeds=[1,2] --set run.out_dir=runs/x",
    )


def _add_config(p: argparse.ArgumentParser, parallel: bool = False) -> None:
    p.add_argument("config", nargs="?", help="TOML config (default: built-in defaults)")
    p.add_argument("--out", help="output folder (overrides run.out_dir)")
    add_set_option(p)
    if parallel:
        g = p.add_argument_group("parallel execution")
        g.add_argument("--workers", type=int, help="local Dask worker processes (default: one per core)")
        g.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://10.0.0.1:8786")
        g.add_argument("--sync", action="store_true", help="run every task in this process (debugging)")


# --- command implementations -------------------------------------------------------------------


def cmd_characters(args: argparse.Namespace) -> None:
    from .dataset.stage import run_characters

    cfg = _config(args)
    with writing(cfg):
        run_characters(cfg, overwrite=args.overwrite)


def cmd_startpoints(args: argparse.Namespace) -> None:
    from .dataset.stage import run_startpoints

    cfg = _config(args)
    with writing(cfg):
        run_startpoints(cfg, overwrite=args.overwrite)


def cmd_kinematics(args: argparse.Namespace) -> None:
    from .dataset.stage import run_kinematics

    cfg = _config(args)
    with writing(cfg):
        paths = run_kinematics(cfg)
    log.info("%d candidate shards in %s", len(paths), Path(paths[0]).parent if paths else "-")


def cmd_assemble(args: argparse.Namespace) -> None:
    from .dataset.assemble import run_assemble

    cfg = _config(args)
    with writing(cfg):
        train, test = run_assemble(cfg)
    log.info("wrote %s and %s", train, test)


def cmd_inspect(args: argparse.Namespace) -> None:
    from .dataset.inspect import inspect_sample, summary_figure

    cfg = _config(args)
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

    cfg = _config(args)
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
    from .pipeline import run_pipeline, status

    cfg = _config(args)
    if args.status:
        for k, v in status(cfg).items():
            print(f"{k:14s} {v}")
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
    p = ds.add_parser("characters", help="UCI character trajectories -> characters.h5")
    _add_config(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_characters)
    p = ds.add_parser("startpoints", help="start points of the writing planes -> startpoints.h5")
    _add_config(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_startpoints)
    p = ds.add_parser("kinematics", help="augmented candidates + inverse kinematics -> candidates/shard_*.h5")
    _add_config(p, parallel=True)
    p.set_defaults(func=cmd_kinematics)
    p = ds.add_parser(
        "assemble", help="select, place in 320 frames, spindle inputs -> pcrt_train.h5, pcrt_test.h5"
    )
    _add_config(p, parallel=True)
    p.set_defaults(func=cmd_assemble)
    p = ds.add_parser("inspect", help="PNG of one sample (pen path to inputs) or of the dataset summary")
    _add_config(p)
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
    _add_config(p)
    p.add_argument("--file", dest="files", action="append", default=[], help="a PCRT file (repeatable)")
    p.add_argument("--jump-mm", type=float, default=5.0, help="smallest step counted, mm (default 5)")
    p.add_argument("--ratio", type=float, default=4.0, help="times both neighbouring steps (default 4)")
    p.add_argument("--json", action="store_true", help="also print the full reports (rows, frames) as JSON")
    p.add_argument("--strict", action="store_true", help="exit with status 2 when any jump is found")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("pipeline", help="every stage in order, cached and resumable")
    _add_config(p, parallel=True)
    p.add_argument("--only", help="comma-separated stage names")
    p.add_argument("--status", action="store_true", help="show which stages are done, stale or to do")
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute stages whose config or inputs changed, deleting their earlier outputs "
        "(without it the pipeline stops and says what would be lost)",
    )
    p.set_defaults(func=cmd_pipeline)

    for hook in EXTRA_COMMANDS:
        hook(sub, ds)
    return ap


EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction, argparse._SubParsersAction], None]] = []
"""Functions adding subcommands of later stages (kept in one list, see :mod:`deepdraw.commands`)."""


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("matplotlib", "PIL", "distributed", "fontTools"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    from . import commands  # noqa: F401  (registers the later stages' subcommands)

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
