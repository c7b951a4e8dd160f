"""``deepdraw encode``, ``deepdraw predict`` and ``deepdraw predict-report`` (docs/encode.md).

:func:`add_commands` is called by :func:`deepdraw.commands.add_commands`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepdraw.cliargs import add_set_option


def _cfg(args: argparse.Namespace):
    from deepdraw.config import Config, load_config

    overrides = getattr(args, "overrides", None) or []
    cfg = load_config(args.config, overrides) if (args.config or overrides) else Config()
    if args.quiet:
        cfg.run.quiet = True
    return cfg


def cmd_encode(args: argparse.Namespace) -> None:
    from deepdraw.encode.encode import encode_files
    from deepdraw.encode.models import run_models

    cfg = _cfg(args)
    e = cfg.encode
    for key in ("rate_hz", "units", "scale", "overlap", "onset", "jumps", "max_gap_s", "dlc_bodypart"):
        v = getattr(args, key)
        if v is not None:
            setattr(e, key, v)
    if args.origin is not None:
        e.origin_cm = list(args.origin)
    if args.axes is not None:
        e.axes = list(args.axes)
    if args.model:
        e.models = list(args.model)
    if args.no_untrained:
        e.untrained = False
    out = Path(args.out)
    enc = encode_files(args.files, cfg, out / "encoded.h5", overwrite=args.overwrite)
    print(enc)
    if not args.no_activations:
        for p in run_models(enc, cfg, out / "activations", overwrite=args.overwrite):
            print(p)


def cmd_predict(args: argparse.Namespace) -> None:
    from deepdraw.encode.predict import run_predict

    cfg = _cfg(args)
    p = cfg.predict
    if args.components is not None:
        p.n_components = args.components
    if args.folds is not None:
        p.folds = args.folds
    if args.layer:
        p.layers = list(args.layer)
    print(run_predict(args.encoded, args.neurons, cfg, Path(args.out or Path(args.encoded) / "predict"),
                      overwrite=args.overwrite))  # fmt: skip


def cmd_predict_report(args: argparse.Namespace) -> None:
    from deepdraw.report.predict import build_predict_report

    print(build_predict_report(args.folder, threshold=args.threshold, draw_missing=True))


def add_commands(sub: argparse._SubParsersAction, ds: argparse._SubParsersAction) -> None:
    """Add ``encode``, ``predict`` and ``predict-report`` to the ``deepdraw`` parser (once)."""
    if "encode" in sub.choices:
        return
    p = sub.add_parser(
        "encode",
        help="own movements -> proprioceptive inputs -> activations of trained and untrained models",
        description="Hand positions (CSV, NPY, HDF5, NWB SpatialSeries, DeepLabCut 3-D CSV), joint angles or "
        "muscle lengths -> the models' 15 ms grid -> IK -> muscle lengths -> spindle inputs in 320-frame "
        "windows (encoded.h5) -> every model's activations (activations/*.h5). See docs/encode.md.",
    )
    p.add_argument("files", nargs="+", help="movement files (docs/formats.md, 'Own movements')")
    p.add_argument("--out", required=True, help="output folder (encoded.h5, activations/)")
    p.add_argument("--config", help="TOML config ([encode], [muscles], [assembly] sections)")
    add_set_option(p)
    p.add_argument(
        "--rate", dest="rate_hz", type=float, help="sampling rate of the files, Hz (encode.rate_hz)"
    )
    p.add_argument("--units", help="position units cm, mm or m (encode.units)")
    p.add_argument("--origin", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="lab origin in the world frame, cm from the shoulder (encode.origin_cm)")  # fmt: skip
    p.add_argument("--axes", type=lambda s: s.split(","), metavar="A,B,C",
                   help="world axis of each lab axis, e.g. y,-x,z (encode.axes)")  # fmt: skip
    p.add_argument("--scale", type=float, help="factor on the lab positions (encode.scale)")
    p.add_argument("--overlap", type=int, help="frames shared by consecutive windows (encode.overlap)")
    p.add_argument("--onset", type=int, help="window frame of a short movement's start; -1 centred")
    p.add_argument("--jumps", choices=["keep", "mask", "reject"], help="windows with muscle-length jumps")
    p.add_argument("--max-gap", dest="max_gap_s", type=float, help="longest gap interpolated, s")
    p.add_argument("--bodypart", dest="dlc_bodypart", help="DeepLabCut body part taken as the hand")
    p.add_argument(
        "--model", action="append", help="zoo name or checkpoint path (repeatable; default: the zoo)"
    )
    p.add_argument("--no-untrained", action="store_true", help="skip the untrained controls")
    p.add_argument("--no-activations", action="store_true", help="write encoded.h5 only")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "predict",
        help="recorded neurons vs model layers: PCA + ridge, cross-validated explained variance",
        description="For every model file and layer of an encode folder: PCA (training folds only), ridge "
        "with inner-CV penalties, K-fold explained variance per neuron; tables, predict.h5, figures and an HTML "
        "report (index.html).",
    )
    p.add_argument("encoded", help="folder written by `deepdraw encode`")
    p.add_argument("neurons", help="neural data: .npy, .h5 or .nwb (Units + trials); docs/formats.md")
    p.add_argument("--out", help="output folder (default: ENCODED/predict)")
    p.add_argument("--config", help="TOML config ([predict] section)")
    add_set_option(p)
    p.add_argument("--components", type=int, help="PCA components per layer (predict.n_components)")
    p.add_argument("--folds", type=int, help="outer folds (predict.folds)")
    p.add_argument("--layer", action="append", help="layer to compare (repeatable; default: all)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "predict-report",
        help="(re)build the HTML report index.html of a `deepdraw predict` output folder",
        description="Reads FOLDER/predict.h5 and writes FOLDER/index.html: provenance, the model x layer "
        "table, the figures (drawn first when missing), trained vs untrained, the noise ceiling. "
        "`deepdraw predict` writes it already; rebuild after moving the folder or to change --threshold.",
    )
    p.add_argument("folder", help="output folder of `deepdraw predict` (holds predict.h5)")
    p.add_argument(
        "--threshold",
        type=float,
        help="EV above which a neuron counts as predicted (default: predict.ev_threshold in predict.h5)",
    )
    p.set_defaults(func=cmd_predict_report)
