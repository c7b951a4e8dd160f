"""``deepdraw zoo``: the shipped paper-scale models (``list``, ``show NAME``, ``add RUN_DIR``).

:func:`add_commands` is called by :func:`deepdraw.commands.add_commands`.
"""

from __future__ import annotations

import argparse
import json


def _fmt_metric(card: dict) -> str:
    test = (card.get("metrics") or {}).get("test") or {}
    if "accuracy" in test:
        return f"{100 * test['accuracy']:.2f} %"
    if "error_cm" in test:
        return f"{test['error_cm']:.3f} cm"
    return "-"


def cmd_list(args: argparse.Namespace) -> None:
    from deepdraw import zoo

    rows = zoo.cards(args.zoo_dir)
    if args.json:
        print(json.dumps([{k: c[k] for k in ("name", "task", "seed", "family")} for c in rows], indent=1))
        return
    if not rows:
        print(f"no models in {zoo.resolve_zoo_dir(args.zoo_dir)}")
        return
    width = max(len(c["name"]) for c in rows)
    print(f"{'name':{width}s}  task  seed  test        epochs  untrained")
    for c in rows:
        un = {"metrics": {"test": (c.get("untrained") or {}).get("test")}}
        ep = (c.get("training") or {}).get("epochs")
        print(
            f"{c['name']:{width}s}  {c['task']:4s}  {c['seed']:4d}  {_fmt_metric(c):10s}  {ep!s:6s}  {_fmt_metric(un)}"
        )


def cmd_show(args: argparse.Namespace) -> None:
    from deepdraw import zoo

    card = zoo.card(args.name, args.zoo_dir)
    if args.verify:
        zoo.load(args.name, zoo_dir=args.zoo_dir)
        zoo.load(args.name, untrained=True, zoo_dir=args.zoo_dir)
        card = {**card, "verified": "checkpoint sha256 and untrained weights digest match the card"}
    print(json.dumps(card, indent=1))


def cmd_add(args: argparse.Namespace) -> None:
    from deepdraw.zoo.package import add_to_zoo

    for d in args.run_dir:
        print(
            add_to_zoo(d, args.zoo_dir, train_path=args.train, test_path=args.test, overwrite=args.overwrite)
        )


def add_commands(sub: argparse._SubParsersAction, ds: argparse._SubParsersAction) -> None:
    """Add ``zoo`` (``list``, ``show``, ``add``) to the ``deepdraw`` parser (once)."""
    if "zoo" in sub.choices:
        return
    z = sub.add_parser(
        "zoo",
        help="the shipped paper-scale trained models: list, show, add",
        description="Trained paper-scale networks shipped with deepdraw, each with a model card "
        "(docs/zoo.md). In Python: deepdraw.zoo.available(), deepdraw.zoo.load(name).",
    ).add_subparsers(dest="zoo_cmd", required=True, metavar="ACTION")
    p = z.add_parser("list", help="one line per shipped model: task, seed, test metric, epochs, untrained")
    p.add_argument("--json", action="store_true", help="names, tasks, seeds and families as JSON")
    p.set_defaults(func=cmd_list)
    p = z.add_parser("show", help="the model card of NAME (JSON)")
    p.add_argument("name")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also load the checkpoint (sha256 check) and rebuild the untrained control (digest check)",
    )
    p.set_defaults(func=cmd_show)
    p = z.add_parser(
        "add", help="package finished training runs (models/<name>/ folders) into the zoo (maintainers)"
    )
    p.add_argument("run_dir", nargs="+", help="models/<name>/ folder of a finished 'deepdraw train' run")
    p.add_argument("--train", help="the PCRT train file it was trained on (default: the run's record)")
    p.add_argument("--test", help="the PCRT test file (default: the run's record)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in the zoo")
    p.set_defaults(func=cmd_add)
    for p in (z.choices["list"], z.choices["show"], z.choices["add"]):
        p.add_argument("--zoo-dir", help="another zoo folder (default: the one shipped in the package)")
