"""Subcommands of stage 3: ``train``, ``evaluate``, ``search``, ``activations`` (see ``docs/training.md``).

:func:`add_commands` is called by :func:`deepdraw.commands.add_commands`. ``train`` and ``activations``
are the pipeline's stages alone (:func:`deepdraw.pipeline.run_stage`); ``search`` is the search stage,
then (unless ``--no-seeds``) the winners' seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math

from deepdraw.cliargs import add_stage_args, run_stage_command, writing

log = logging.getLogger("deepdraw")

_NAMES = ("train", "evaluate", "search", "activations")


def cmd_train(args: argparse.Namespace) -> None:
    import pandas as pd

    from deepdraw.paths import RunPaths

    cfg = run_stage_command(args, "train")
    summary = RunPaths.of(cfg).models / "summary.csv"
    table = pd.read_csv(summary)
    log.info(
        "%d trained models and %d untrained controls; summary in %s",
        int(table["trained"].sum()),
        int((~table["trained"].astype(bool)).sum()),
        summary,
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from deepdraw.nn.stage import run_evaluate

    out = run_evaluate(args.checkpoint, args.data, device=args.device, quiet=args.quiet)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
    print(json.dumps(clean, indent=1))


def cmd_search(args: argparse.Namespace) -> None:
    import pandas as pd

    from deepdraw.nn.search_stage import search_dir, train_winners

    cfg = run_stage_command(args, "search")
    if not args.no_seeds:
        with writing(cfg):
            train_winners(cfg)
    table = pd.read_csv(search_dir(cfg) / "search_results.csv")
    log.info("%d candidates; results in %s", len(table), search_dir(cfg) / "search_results.csv")


def cmd_activations(args: argparse.Namespace) -> None:
    from deepdraw.nn.stage import activation_paths

    cfg = run_stage_command(args, "activations")
    paths = activation_paths(cfg)
    log.info("%d activations files in %s", len(paths), paths[0].parent if paths else "-")


def add_commands(sub: argparse._SubParsersAction, ds: argparse._SubParsersAction) -> None:
    """Add ``train``, ``evaluate``, ``search`` and ``activations`` to the ``deepdraw`` parser (once)."""
    if any(n in sub.choices for n in _NAMES):
        return
    p = sub.add_parser(
        "train",
        help="train [train] models x tasks x seeds (and keep their untrained controls) -> models/",
        description="Train every model of [train] models for every task and seed of [train] into "
        "<out_dir>/models/<name>/ (best.pt, untrained.pt, last.pt, metrics.json). Finished runs are "
        "skipped, killed ones resume. Writes models/summary.csv with test and validation metrics of the "
        "trained models and of their untrained controls.",
    )
    add_stage_args(p, parallel=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="metrics of one checkpoint on one PCRT file, printed as JSON",
        description="Evaluate a checkpoint (best.pt, untrained.pt, last.pt) on a PCRT HDF5 file and print "
        "its metrics as JSON: loss and accuracy for ART; loss and error_cm for TDT (TDT-PV adds "
        "rmse_scaled and velocity_error_cm_s).",
    )
    p.add_argument("checkpoint", help="a checkpoint written by 'deepdraw train' or 'deepdraw search'")
    p.add_argument("data", help="PCRT HDF5 file (e.g. <out_dir>/dataset/pcrt_test.h5)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "search",
        help="random architecture search on ART and TDT, then seeds of the best per family -> search/",
        description="Train [search] n_per_family random architectures per family of [search] families "
        "(the paper's grid) for every task of [search] tasks (default ART and TDT), one Dask task per "
        "candidate and task; finished candidates are skipped. Write search/search_results.csv, "
        "search/ranking.csv (rank per family and task on the validation metric, or the test metric with "
        '[search] select_by = "test") and search/best_per_family.csv. The same function is the '
        "pipeline's search stage. Then, unless --no-seeds, train the best architecture of each family for "
        "every seed and task of [train] into models/ (search/seeds_summary.csv); in the pipeline, "
        '[train] models = "search" does that instead.',
    )
    add_stage_args(p, parallel=True)
    p.add_argument("--no-seeds", action="store_true", help="stop after the search; do not train the seeds")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "activations",
        help="every layer of every trained and untrained model on a seeded test subset -> activations/",
        description="Run the trained models (best.pt) and untrained controls (untrained.pt) of [train] on "
        "[activations] n_samples rows of the test file (the same rows for every model) and write one "
        "HDF5 file per model to <out_dir>/activations/<name>.h5 (untrained names end in 'r').",
    )
    add_stage_args(p)
    p.set_defaults(func=cmd_activations)
