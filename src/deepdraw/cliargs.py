"""What every ``deepdraw`` subcommand shares: the config arguments (``CONFIG``, ``--out``, ``--set``,
the parallel flags), the config they make, the run folder's lock, and the runner of a stage command.

Imported by :mod:`deepdraw.cli` and by the modules adding subcommands (:mod:`deepdraw.commands`,
:mod:`deepdraw.nn.cli`, :mod:`deepdraw.encode.cli`), so none of them imports another.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from .config import Config, load_config

log = logging.getLogger("deepdraw")


def config_from_args(args: argparse.Namespace) -> Config:
    """The config a command runs with: ``CONFIG`` (or the defaults), ``--set``, ``--out``, ``-q`` and
    the parallel flags applied."""
    sets = getattr(args, "overrides", None) or []
    cfg = load_config(args.config or None, sets) if args.config or sets else Config()
    if getattr(args, "out", None):
        cfg.run.out_dir = args.out
    if args.quiet:
        cfg.run.quiet = True
    if hasattr(args, "scheduler"):  # the parallel flags of add_config_args (muscles build: --workers only)
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


def add_config_args(p: argparse.ArgumentParser, parallel: bool = False) -> None:
    """``CONFIG``, ``--out`` and ``--set`` (and, with ``parallel``, ``--workers``, ``--scheduler``, ``--sync``)."""
    p.add_argument("config", nargs="?", help="TOML config (default: built-in defaults)")
    p.add_argument("--out", help="output folder (overrides run.out_dir)")
    add_set_option(p)
    if parallel:
        g = p.add_argument_group("parallel execution")
        g.add_argument("--workers", type=int, help="local Dask worker processes (default: one per core)")
        g.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://10.0.0.1:8786")
        g.add_argument("--sync", action="store_true", help="run every task in this process (debugging)")


def add_stage_args(p: argparse.ArgumentParser, parallel: bool = False) -> None:
    """The arguments of a stage command: :func:`add_config_args` and ``--force``."""
    add_config_args(p, parallel)
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute the stage when its config or inputs changed or its outputs are damaged, deleting "
        "its earlier outputs (without it the command stops and says what would be lost)",
    )


def run_stage_command(
    args: argparse.Namespace, stage: str, command: str | None = None, cfg: Config | None = None
) -> Config:
    """Run one pipeline stage for a subcommand, as ``deepdraw pipeline --only STAGE`` does (same lock,
    checks, stamps and refusals; see :func:`deepdraw.pipeline.run_stage`), with ``cfg`` or the config of
    ``args``. Returns the config."""
    from .pipeline import run_stage

    cfg = cfg or config_from_args(args)
    rec = run_stage(cfg, stage, force=getattr(args, "force", False), command=command or stage)
    if rec.get("skipped"):
        log.info("[%s] up to date (same config and inputs): nothing to do", stage)
    return cfg
