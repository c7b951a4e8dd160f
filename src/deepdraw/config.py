"""Typed run configuration, loaded from TOML.

One TOML file configures a whole run; each stage reads its own section. Every section is a dataclass
below, with defaults and units in the field comments; ``docs/config.md`` lists them. Unknown sections
and keys are errors that suggest the nearest valid name; every value is checked at load
(:func:`validate_config`). The resolved config (defaults filled in) is
stored as JSON in every artifact the run writes.

Example (``configs/demo.toml``)::

    [run]
    out_dir = "runs/demo"
    seed = 1

    [kinematics]
    n_candidates = 4000
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contracts import N_FRAMES
from .errors import DeepDrawError

PLANES = ("horizontal", "vertical")


@dataclass
class RunConfig:
    """Where outputs go and the root seed of every random draw of the run."""

    out_dir: str = "runs/demo"  # relative paths are taken from the current directory
    seed: int = 0  # root of every np.random.SeedSequence of the run
    quiet: bool = False  # no progress bars
    dataset_dir: str = ""  # "" = <out_dir>/dataset; else another run's dataset folder, used read-only (no dataset sections then)


@dataclass
class ParallelConfig:
    """How stages run their shards / tasks (see docs/parallel.md)."""

    mode: str = "local"  # "local" (a LocalCluster), "sync" (in-process, for debugging), "scheduler", "slurm"
    workers: int = 0  # local worker processes; 0 = one per core (one per GPU when gpus > 0)
    scheduler: str = ""  # address of an existing Dask scheduler (mode "scheduler"), e.g. tcp://host:8786
    memory_limit: str = "2GB"  # per local worker: a size ("2GB", "512MiB"), bytes, or "auto"
    gpus: int = 0  # GPUs of this machine (local) or of each job (slurm): one worker per GPU, training tasks take one; scheduler: workers declare GPU=1
    queue: str = ""  # slurm: partition (#SBATCH -p); "" = the cluster's default
    account: str = ""  # slurm: account charged (#SBATCH -A); "" = none
    cores: int = 1  # slurm: CPU cores per job (--cpus-per-task)
    memory: str = "4GB"  # slurm: memory per job (--mem), a size such as "32GB"
    walltime: str = "01:00:00"  # slurm: time limit per job (-t), [D-]HH:MM:SS
    jobs: int = 1  # slurm: jobs submitted (each one node's share: cores, memory, gpus)
    processes: int = 0  # slurm: worker processes per job; 0 = one per GPU, or one per core without GPUs
    job_directives: list[str] = field(
        default_factory=list
    )  # slurm: extra #SBATCH lines, e.g. ["--qos=long", "--constraint=a100"]
    job_prologue: list[str] = field(
        default_factory=list
    )  # slurm: shell lines run before the workers start, e.g. ["module load cuda"]
    interface: str = (
        ""  # slurm: network interface of the workers and scheduler (e.g. "ib0"); "" = Dask's default
    )
    log_dir: str = ""  # slurm: folder of the job logs (-e/-o); "" = the submit folder
    python: str = ""  # slurm: command that runs the workers' Python, e.g. "apptainer exec deepdraw.sif python"; "" = this one


@dataclass
class CharactersConfig:
    """UCI Character Trajectories preprocessing (original: dataset/uci_trajectorydata.py)."""

    source: str = ""  # "" = the copy shipped in data/; else a path to mixoutALL_shifted.mat
    keep_aspect: bool = False  # original: each axis rescaled on its own to the box
    box_cm: float = 10.0  # side of the box the pen path is rescaled to (cm)


@dataclass
class StartpointsConfig:
    """Start points of the pen path in the arm's workspace (original: dataset/generate_startpoints.py)."""

    source: str = "original"  # "original" (shipped file of DeepDraw) or "search" (our workspace search)
    grid_step_cm: float = 3.0  # search grid spacing over the workspace (cm)
    square_cm: float = 20.0  # in-plane square whose corners must be reachable (cm)
    fine: int = 15  # fine check: fine x fine points 1 cm apart around the candidate
    tol_cm: float = 1e-2  # a point is reachable when the IK error is below this (cm)


@dataclass
class KinematicsConfig:
    """Augmented hand trajectories and their inverse kinematics (original: dataset/generate_data.py)."""

    n_candidates: int = 2000  # candidate movements generated (paper: 1,000,000)
    shard_size: int = 500  # candidates per shard / Dask task
    planes: list[str] = field(default_factory=lambda: list(PLANES))  # writing planes used
    ik: str = "batched"  # "batched" (fast, default) or "reference" (per-frame SLSQP, as the original)
    max_tracing_error_cm: float = 1e-2  # acceptance: summed IK error over the frames (cm)
    max_joint_jerk: float = 1.0  # acceptance: ||d3 q / dt3||_F, degrees / frame^3
    max_attempts: int = 20  # redraws of the latents before a candidate is given up (recorded)
    acceptance: str = "and"  # "and" (paper: both criteria) or "original" (the original's `and` bug: either)
    sizes: list[float] = field(default_factory=lambda: [0.7, 1.0, 1.3])  # size latent (length, duration)
    angles: list[float] = field(default_factory=lambda: [-30.0, -15.0, 0.0, 15.0, 30.0])  # rot/shear, degrees
    speeds: list[float] = field(default_factory=lambda: [0.8, 1.0, 1.2, 1.4])  # speed latent
    noises: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3])  # drawn, recorded, not applied
    save_trajectories: bool = True  # keep hand/joint paths of candidates in the shards (off at scale)
    muscle_jerk: str = "screen"  # "screen" (bound from tables; OpenSim only if selection needs it) or "exact"


@dataclass
class MusclesConfig:
    """Muscle fiber lengths from the MoBL-ARMS OpenSim model (original: make_muscle_config)."""

    engine: str = "fast"  # "fast" (validated surrogate with OpenSim fallback) or "exact" (OpenSim per frame)
    model: str = ""  # "" = data/reference_model/MoBL_ARMS_module5_scaleIK.osim
    table: str = ""  # "" = data/muscles/fast_engine.h5 (rebuild: deepdraw dataset muscles build)
    level2: bool = True  # use the fast engine's finer tables in the cells level 1 leaves to OpenSim


@dataclass
class AssemblyConfig:
    """Selection, temporal placement, proprioceptive inputs and the train/test split (docs/dataset.md)."""

    n_samples: int = 1000  # samples kept (paper: 200,000)
    n_frames: int = N_FRAMES  # frames per sample (4.8 s at 15 ms); the PCRT schema and the networks need 320
    dt: float = 0.015  # seconds per frame
    firing_noise: float = 0.3  # spindle_firing noise, x std over time per muscle
    test_fraction: float = 0.2  # share of samples in pcrt_test.h5
    chunk: int = 1000  # samples per write block


@dataclass
class SvmConfig:
    """Pairwise linear SVMs and linear decoding baselines (original: svm-analysis/; docs/svm.md)."""

    inputs: list[str] = field(  # PCRT keys fitted (flattened per sample)
        default_factory=lambda: [
            "endeffector_coords",
            "joint_coords",
            "muscle_coords",
            "spindle_firing",
            "spindle_info",
        ]
    )
    c_grid: list[float] = field(default_factory=lambda: [10.0**k for k in range(-4, 5)])  # C values
    subsets: list[str] = field(default_factory=lambda: ["full"])  # "full", "all", "size=0.7,plane=vertical"
    max_train: int = 0  # 0 = all training samples
    val_fraction: float = 0.1  # last share of each pair's training rows used to choose C
    rank: int = 0  # 0 = exact solver; k > 0 = project each pair on its top-k principal directions (approx.)
    project: int = 0  # k > 0: all pairs of an input share the top-k principal directions of the train file
    project_sample: int = 20000  # training rows (seeded sample) that svm.project's directions are found on
    tol: float = 1e-6  # dual solver tolerance (largest projected-gradient entry, margin units)
    max_iter: int = 100  # active-set iterations per C before the Huber-Newton fallback
    save_weights: bool = True  # store every chosen model's weights in svm_results.h5
    read_chunk: int = 256  # samples per HDF5 read when streaming the test file / the TDT decoder
    decode: bool = True  # fit the linear TDT baseline (hand position from decode_input)
    decode_input: str = "spindle_info"  # input of the linear TDT baseline
    decode_window: int = 1  # frames per design row (odd; 1 = the inputs at that frame only)
    decode_alpha: float = 1e-6  # ridge on the standardised inputs (~ ordinary least squares)


@dataclass
class TrainConfig:
    """Network training (original: nn-training/, code/nn_train_utils.py; docs/training.md)."""

    models: list[str] | str = field(  # architecture names trained, or "search" (the search's winners)
        default_factory=lambda: [
            "spatial_temporal_4_8-16-16-32_32-32-64-64_7293",
            "spatiotemporal_4_8-8-32-64_7272",
            "lstm_3_8-16-16_256",
        ]
    )
    tasks: list[str] = field(default_factory=lambda: ["art", "tdt"])  # "art", "tdt", "tdt_pv"
    seeds: list[int] = field(default_factory=lambda: [1, 2])  # a trained model + untrained control each
    max_epochs: int = 50  # epoch cap
    patience: int = 5  # epochs without validation improvement before lr / 4
    lr: float = 5e-4  # Adam learning rate (conv families)
    batch_size: int = 256  # conv families
    val_fraction: float = 0.1  # validation = last share of the train file
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    lstm_lr: float = 1e-3  # lr of the lstm family (original train_networks.py; paper text: "same" 5e-4)
    lstm_batch_size: int = 128  # batch size of the lstm family (original; paper text: 256)
    schedule: str = "paper"  # "paper" (lr / 4 after 5 flat epochs, stop at the 2nd plateau) or "constant"
    min_epochs: int = 0  # no early stop before this epoch (original code: 40; 0 = off)
    target_alignment: str = "centre"  # TDT target frames: "centre" (receptive-field centres) or "original"
    num_threads: int = 0  # torch CPU threads for in-process training; 0 = torch's default
    precision: str = (
        "auto"  # "auto" (fast path, bf16 where native), "bf16", "fast32" or "fp32" (exact reference)
    )
    group: str = "none"  # "seeds": the seeds of one architecture and task trained together on shared batches
    source: str = "train"  # "train" (trained in this run), "zoo" (the shipped paper-scale models installed, not trained) or "auto" (shipped runs installed, the others trained; docs/zoo.md)


@dataclass
class SearchConfig:
    """Random architecture search over the paper's grid (Table 2): a pipeline stage when n_per_family > 0."""

    families: list[str] = field(  # families searched
        default_factory=lambda: ["spatial_temporal", "spatiotemporal", "lstm"]
    )
    n_per_family: int = 0  # random architectures per family; 0 = no search stage (paper: 50)
    tasks: list[str] = field(default_factory=lambda: ["art", "tdt"])  # each candidate trained on each
    max_epochs: int = 50  # epoch cap per candidate
    grid: str = "paper"  # "paper" (eLife Table 2) or "code" (train_networks.py's LSTM grid)
    select_by: str = "validation"  # winners ranked on "validation" (default) or "test" (the original's train_initializations.py)
    select_task: str = "art"  # task whose metric picks the winner of each family: accuracy for "art", position error for "tdt"/"tdt_pv"


@dataclass
class ActivationsConfig:
    """Activation extraction on a seeded test subset shared by all models."""

    n_samples: int = 4000  # test samples (seeded subset, same for every model)
    batch_size: int = 100  # forward-pass batch


@dataclass
class RsaConfig:
    """RDMs, CKA, t-SNE and population decoding (original: repr-analysis/, single_cell/; docs/rsa.md)."""

    per_class: int = 200  # samples per character in the RDM subset, drawn without replacement
    tsne_perplexity: float = 40.0  # t-SNE perplexity (paper: 40)
    pca_components: int = 50  # PCA before t-SNE
    ridge_alpha: float = 1.0  # population decoding
    layers: list[str] = field(default_factory=list)  # layers analysed; [] = every layer of each model
    inputs: list[str] = field(  # input representations (test-file keys) given RDMs and t-SNE
        default_factory=lambda: ["endeffector_coords", "joint_coords", "muscle_coords", "spindle_info"]
    )
    gram_dtype: str = "float32"  # "float32" or "float64": precision of the Gram products (RDMs, CKA)
    device: str = "cpu"  # Gram products on "cpu", "cuda" or "auto" (torch, GPU when present)
    save_rdms: bool = True  # store every condensed RDM (k(k-1)/2 float32) in rsa_results.h5
    tsne: bool = True  # compute t-SNE embeddings per layer
    tsne_per_class: int = 50  # t-SNE subset per character (paper Fig. 4B: 50)
    tsne_iter: int = 300  # t-SNE iterations (paper: 300; at least 250)
    decoding: bool = True  # population decoding of position, direction and speed per layer
    decoding_test_fraction: float = 0.2  # test trajectories (split by trajectory, never by frame)


@dataclass
class TuningConfig:
    """Single-unit tuning analyses (original: single_cell/; docs/tuning.md)."""

    r2_threshold: float = 0.2  # a unit is tuned when its test R^2 (or label index) exceeds this
    test_fraction: float = 0.2  # fraction of trajectories held out (split by trajectory, per plane)
    split_seed: int = 42  # seed of the train/test split (original: random_state=42); same for all models
    orientations: list[str] = field(default_factory=list)  # [] = every orientation present in the file
    levels_horizontal: list[float] = field(default_factory=list)  # z planes (cm) analysed; [] = all found
    levels_vertical: list[float] = field(default_factory=list)  # x planes (cm) analysed; [] = all found
    reference_horizontal: float = 0.0  # central plane for invariance: z = 0 cm
    reference_vertical: float = 30.0  # central plane for invariance: x = 30 cm
    plane_tol_cm: float = 0.5  # samples whose level coordinates differ by less share a plane
    window: str = "movement"  # frames analysed: "movement" (RF centre in [start_id, end_id)) or "all"
    edge_frames: int = 32  # edge trimming: output frames whose RF centre is <= this are cut at both ends
    trim: str = "fixed"  # "fixed" (both ends of every layer), "original" (the original's bug), "none"
    min_norm: float = 0.0  # direction undefined (NaN, frame dropped) where the vector norm is <= this
    exclude_below: float = -0.1  # scores below are left out of medians, quantiles and violins
    dead_tol: float = 1e-6  # dead unit: peak-to-peak activation <= dead_tol * max(1, max |activation|)
    pd_bins: int = 18  # bins of the preferred-direction histogram on [-pi, pi]
    min_plane_units: int = 3  # planes with fewer tuned units are left out of the invariance mean
    label_index: str = "macro"  # label selectivity: "macro" (code: macro AUC) or "max" (paper text)
    label_samples: str = "trajectory"  # label samples: "trajectory" (mean over the movement) or "frames" (original: every time point)
    label_max_points: int = 500000  # "frames": at most this many (trajectory, time point) samples; evenly spaced time points beyond
    chunk: int = 128  # trajectories read per block
    figures: bool = True  # write PNG figures


@dataclass
class EncodeConfig:
    """Own movements -> proprioceptive inputs -> model activations (``deepdraw encode``, docs/encode.md)."""

    rate_hz: float = 0.0  # input sampling rate (Hz); 0 = from the file (time column, rate attribute)
    units: str = ""  # input position units "cm", "mm" or "m"; "" = from the file (NWB unit), else cm
    axes: list[str] = field(default_factory=lambda: list("xyz"))  # world axis (+-x/y/z) of each lab axis
    origin_cm: list[float] = field(default_factory=lambda: [0.0] * 3)  # lab origin in the world frame, cm
    scale: float = 1.0  # factor on the lab positions (after units and axes), e.g. to fit a smaller arm
    max_gap_s: float = 0.0  # NaN / low-likelihood gaps up to this long (s) are interpolated; longer: errors
    reach_tol_cm: float = 0.1  # largest IK position error (cm) at any frame before "out of reach"
    overlap: int = 160  # frames shared by consecutive 320-frame windows of a long recording
    onset: int = -1  # frame at which a short movement starts in its window; -1 = centred
    jumps: str = "keep"  # windows with muscle-length jumps: "keep", "mask" (left out by predict), "reject"
    jump_mm: float = 5.0  # smallest single-frame muscle-length step counted as a jump (mm)
    dlc_bodypart: str = "hand"  # DeepLabCut 3-D CSV: the body part taken as the hand
    dlc_min_likelihood: float = 0.9  # DeepLabCut: points below this likelihood become gaps
    nwb_series: str = ""  # NWB: name of the SpatialSeries (hand position); "" = the only 3-D one
    nwb_trials: bool = True  # NWB: one movement per row of the trials table (else the whole series)
    models: list[str] = field(default_factory=list)  # zoo names or checkpoint paths; [] = the whole zoo
    untrained: bool = True  # also the untrained control of each model
    batch_size: int = 64  # windows per forward pass


@dataclass
class PredictConfig:
    """Model units vs recorded neurons: PCA + ridge, cross-validated (``deepdraw predict``)."""

    n_components: int = 50  # principal components kept per layer (fitted on the training folds only)
    folds: int = 5  # outer folds (over blocks of frames, never single frames)
    block_frames: int = 320  # frames of a movement kept together in one fold (contiguous blocks)
    alphas: list[float] = field(default_factory=lambda: [10.0**k for k in range(-4, 5)])  # x mean PC var.
    seed: int = 0  # seed of the assignment of blocks to folds
    layers: list[str] = field(default_factory=list)  # layers compared; [] = every layer (input included)
    figures: bool = True  # write the figures (heat map, best layer, trained vs untrained, noise ceiling)
    ev_threshold: float = 0.1  # report: share of neurons whose explained variance exceeds this


@dataclass
class ReportConfig:
    """HTML report."""

    title: str = "deepdraw run"  # title of the HTML report


SECTIONS: dict[str, type] = {
    "run": RunConfig,
    "parallel": ParallelConfig,
    "characters": CharactersConfig,
    "startpoints": StartpointsConfig,
    "kinematics": KinematicsConfig,
    "muscles": MusclesConfig,
    "assembly": AssemblyConfig,
    "svm": SvmConfig,
    "train": TrainConfig,
    "search": SearchConfig,
    "activations": ActivationsConfig,
    "rsa": RsaConfig,
    "tuning": TuningConfig,
    "report": ReportConfig,
    "encode": EncodeConfig,
    "predict": PredictConfig,
}


@dataclass
class Config:
    """The whole run configuration: one attribute per section of :data:`SECTIONS`."""

    run: RunConfig = field(default_factory=RunConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    characters: CharactersConfig = field(default_factory=CharactersConfig)
    startpoints: StartpointsConfig = field(default_factory=StartpointsConfig)
    kinematics: KinematicsConfig = field(default_factory=KinematicsConfig)
    muscles: MusclesConfig = field(default_factory=MusclesConfig)
    assembly: AssemblyConfig = field(default_factory=AssemblyConfig)
    svm: SvmConfig = field(default_factory=SvmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    activations: ActivationsConfig = field(default_factory=ActivationsConfig)
    rsa: RsaConfig = field(default_factory=RsaConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    source: str = ""  # the TOML file it came from ("" = defaults)
    given: list[str] | None = (
        None  # sections present in that file, its bases or --set (None = not from a file)
    )
    layers: list[str] = field(default_factory=list)  # the file, its base chain, then each "--set" applied

    def to_dict(self, sections: list[str] | None = None) -> dict[str, Any]:
        """The resolved config as plain data (optionally only some sections)."""
        names = sections or list(SECTIONS)
        return {n: dataclasses.asdict(getattr(self, n)) for n in names}

    def digest(self, sections: list[str]) -> str:
        """sha256 of the named sections (what a stage's outputs depend on)."""
        blob = json.dumps(self.to_dict(sections), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def origin(self) -> str:
        """Where the values came from: the file, its bases and the ``--set`` overrides ("defaults")."""
        files = [Path(x).name for x in self.layers if not x.startswith("--set ")]
        sets = [x for x in self.layers if x.startswith("--set ")]
        text = " <- ".join(files) or (Path(self.source).name if self.source else "defaults")
        return " ".join([text, *sets])

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out_dir)


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(sorted(options))}"


def _check_type(value: Any, tp: Any) -> Any:
    """Return ``value`` coerced to ``tp`` or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise TypeError(f"a list of {item.__name__}")
        return [_check_type(v, item) for v in value]
    if origin in (types.UnionType, typing.Union):
        for t in typing.get_args(tp):
            try:
                return _check_type(value, t)
            except TypeError:
                pass
        raise TypeError(" or ".join(getattr(t, "__name__", str(t)) for t in typing.get_args(tp)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("a string")
        return value
    return value


def build_section(name: str, values: dict[str, Any], where: str) -> Any:
    """Build the dataclass of section ``name`` from TOML values, rejecting unknown keys."""
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in valid:
            raise DeepDrawError(f"{where}: unknown key '{name}.{key}'{_suggest(key, valid)}")
        try:
            kwargs[key] = _check_type(value, hints[key])
        except TypeError as e:
            raise DeepDrawError(f"{where}: key '{name}.{key}' is {value!r}; expected {e}") from None
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], where: str = "<config>") -> Config:
    """Build a :class:`Config` from nested dicts (as parsed from TOML)."""
    kwargs: dict[str, Any] = {}
    for sec, values in data.items():
        if sec not in SECTIONS:
            raise DeepDrawError(f"{where}: unknown section '[{sec}]'{_suggest(sec, list(SECTIONS))}")
        if not isinstance(values, dict):
            raise DeepDrawError(f"{where}: '{sec}' must be a [section] table")
        kwargs[sec] = build_section(sec, values, where)
    cfg = Config(**kwargs, source=where, given=list(data))
    validate_config(cfg, where)
    return cfg


BASE_KEY = "base"
"""Top-level key of a config file naming the config it inherits (a path relative to the file)."""


def _read_toml(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise DeepDrawError(f"{p}: config file not found")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise DeepDrawError(f"{p}: not valid TOML: {e}") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, key by key within each section (lists replace, never concatenate)."""
    out = {sec: dict(values) for sec, values in base.items()}
    for sec, values in top.items():
        out.setdefault(sec, {}).update(values)
    return out


def read_config_chain(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The sections of ``path`` merged over those of its ``base`` chain, and the files of the chain
    (``path`` first). Each file is checked on its own (unknown sections and keys, types), so an error
    names the file that holds the bad key; a cycle of ``base`` names is an error."""
    chain: list[Path] = []
    layers: list[dict[str, Any]] = []
    p = Path(path)
    while True:
        if any(p.resolve() == q.resolve() for q in chain):
            loop = " -> ".join(str(q) for q in [*chain, p])
            raise DeepDrawError(f"{chain[-1]}: key '{BASE_KEY}' makes a cycle ({loop}); expected a chain")
        data = _read_toml(p)
        chain.append(p)
        base = data.pop(BASE_KEY, None)
        for sec, values in data.items():
            if sec not in SECTIONS:
                raise DeepDrawError(f"{p}: unknown section '[{sec}]'{_suggest(sec, [*SECTIONS, BASE_KEY])}")
            if not isinstance(values, dict):
                raise DeepDrawError(f"{p}: '{sec}' must be a [section] table")
            build_section(sec, values, str(p))
        layers.append(data)
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise DeepDrawError(
                f"{p}: key '{BASE_KEY}' is {base!r}; expected the path of another config file (relative "
                "to this one), written before any [section]"
            )
        nxt = p.parent / base
        if not nxt.is_file():
            raise DeepDrawError(f"{p}: key '{BASE_KEY}' names {base!r}, but {nxt} does not exist")
        p = nxt
    merged: dict[str, Any] = {}
    for data in reversed(layers):
        merged = _merge(merged, data)
    return merged, [str(q) for q in chain]


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` (``--set``) -> (section, key, value). The value is a TOML literal
    (``3``, ``[1, 2]``, ``true``, ``"text"``); a value that is not one, or any value of a string key,
    is taken as the bare text (``run.out_dir=runs/x``)."""
    where = f"--set {text}"
    name, eq, raw = text.partition("=")
    sec, dot, key = name.strip().partition(".")
    if not eq or not dot or not key or "." in key:
        raise DeepDrawError(f"{where}: expected SECTION.KEY=VALUE, e.g. train.seeds=[1,2]")
    if sec not in SECTIONS:
        raise DeepDrawError(f"{where}: unknown section '[{sec}]'{_suggest(sec, list(SECTIONS))}")
    valid = [f.name for f in dataclasses.fields(SECTIONS[sec])]
    if key not in valid:
        raise DeepDrawError(f"{where}: unknown key '{sec}.{key}'{_suggest(key, valid)}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if typing.get_type_hints(SECTIONS[sec])[key] is str and not isinstance(value, str):
        value = raw
    build_section(sec, {key: value}, where)  # type check, naming the flag
    return sec, key, value


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load and validate a TOML config file, its ``base`` chain and ``--set`` overrides.

    ``path`` None: the built-in defaults with the overrides (a config that makes its own dataset, as
    ``Config()``). The sections given (:attr:`Config.given`: does the config make its own dataset?) are
    the union over the chain and the overridden sections. Values are checked on the resolved config.
    """
    data, chain = read_config_chain(path) if path is not None else ({}, [])
    sets = [parse_override(t) for t in overrides]
    data = _merge(data, {})
    for sec, key, value in sets:
        data.setdefault(sec, {})[key] = value
    where = str(path) if path is not None else "<defaults>"
    if sets:
        where += " with " + " ".join(f"--set {t}" for t in overrides)
    cfg = config_from_dict(data, where)
    cfg.source = str(path) if path is not None else ""
    cfg.layers = [*chain, *(f"--set {t}" for t in overrides)]
    if path is None:
        cfg.given = None
    return cfg


def _choice(key: str, value: str, options: list[str] | tuple[str, ...]) -> None:
    if value not in options:
        raise DeepDrawError(f"key '{key}' is '{value}'; expected one of {', '.join(options)}")


def _positive(key: str, value: float, what: str = "a positive integer") -> None:
    if not (math.isfinite(value) and value > 0):
        raise DeepDrawError(f"key '{key}' is {value}; expected {what}")


def _fraction(key: str, value: float) -> None:
    if not 0 < value < 1:
        raise DeepDrawError(f"key '{key}' is {value}; expected 0 < x < 1")


DATASET_SECTION_NAMES = ("characters", "startpoints", "kinematics", "muscles", "assembly")
"""The sections that make a dataset (a config without them uses an existing one)."""


def check_run_section(cfg: Config) -> None:
    """Checks of ``[run]``."""
    if not cfg.run.out_dir:
        raise DeepDrawError("key 'run.out_dir' is empty; expected a folder for the run's outputs")
    if cfg.run.seed < 0:
        raise DeepDrawError(f"key 'run.seed' is {cfg.run.seed}; expected a non-negative integer")
    if cfg.run.dataset_dir:
        made_here = [s for s in DATASET_SECTION_NAMES if cfg.given and s in cfg.given]
        if made_here:
            raise DeepDrawError(
                f"key 'run.dataset_dir' is '{cfg.run.dataset_dir}' (another run's dataset, used read-only), but "
                f"the config also has dataset sections [{'], ['.join(made_here)}]; expected one or the other"
            )


def check_parallel_section(cfg: Config) -> None:
    """Checks of ``[parallel]`` (sizes as Dask reads them: "auto" for memory_limit, bytes or "2GB")."""
    p = cfg.parallel
    _choice("parallel.mode", p.mode, ("local", "sync", "scheduler", "slurm"))
    if p.mode == "scheduler" and not p.scheduler:
        raise DeepDrawError(
            "key 'parallel.scheduler' is empty but parallel.mode is 'scheduler'; expected the "
            "address of a Dask scheduler, e.g. tcp://host:8786"
        )
    for key in ("workers", "gpus", "processes"):
        if getattr(p, key) < 0:
            raise DeepDrawError(f"key 'parallel.{key}' is {getattr(p, key)}; expected 0 or more")
    _size("parallel.memory_limit", p.memory_limit, auto=True)
    if p.mode == "slurm":
        _check_slurm(p)


def _size(key: str, value: str, auto: bool = False) -> None:
    if auto and value == "auto":
        return
    from dask.utils import parse_bytes

    try:
        ok = parse_bytes(value) >= (0 if auto else 1)  # memory_limit 0: no limit, as Dask reads it
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise DeepDrawError(
            f"key '{key}' is {value!r}; expected a size such as '2GB', '512MiB', a number of bytes"
            + (", or 'auto'" if auto else "")
        )


_WALLTIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


def _check_slurm(p: ParallelConfig) -> None:
    """The SLURM keys of ``[parallel]`` (mode "slurm"): sizes, the time limit, one worker per GPU."""
    for key in ("cores", "jobs"):
        _positive(f"parallel.{key}", getattr(p, key))
    _size("parallel.memory", p.memory)
    if not _WALLTIME.match(p.walltime):
        raise DeepDrawError(
            f"key 'parallel.walltime' is {p.walltime!r}; expected a SLURM time limit, e.g. '04:00:00' or "
            "'1-12:00:00'"
        )
    if p.gpus and p.processes not in (0, p.gpus):
        raise DeepDrawError(
            f"key 'parallel.processes' is {p.processes} but parallel.gpus is {p.gpus}; expected 0 or "
            f"{p.gpus} (one worker process per GPU)"
        )
    n = p.processes or p.gpus or p.cores
    if n > p.cores:
        raise DeepDrawError(
            f"key 'parallel.cores' is {p.cores}, fewer than the {n} worker processes per job; expected at "
            "least one core per worker"
        )
    for key in ("job_directives", "job_prologue"):
        bad = [x for x in getattr(p, key) if "\n" in x or not x.strip()]
        if bad:
            raise DeepDrawError(f"key 'parallel.{key}' holds {bad[0]!r}; expected non-empty one-line entries")
    if any(d.startswith(("--gres", "--gpus")) for d in p.job_directives) and p.gpus:
        raise DeepDrawError(
            "key 'parallel.job_directives' requests GPUs itself, and so does parallel.gpus; expected only "
            "parallel.gpus (it writes --gres=gpu:N)"
        )


def check_dataset_sections(cfg: Config) -> None:
    """Checks of ``[characters]``, ``[startpoints]``, ``[kinematics]``, ``[muscles]``, ``[assembly]``."""
    _positive("characters.box_cm", cfg.characters.box_cm, "a positive size in cm")
    s = cfg.startpoints
    _choice("startpoints.source", s.source, ("original", "search"))
    for key in ("grid_step_cm", "square_cm", "tol_cm"):
        _positive(f"startpoints.{key}", getattr(s, key), "a positive length in cm")
    _positive("startpoints.fine", s.fine)
    k = cfg.kinematics
    _choice("kinematics.ik", k.ik, ("batched", "reference"))
    _choice("kinematics.acceptance", k.acceptance, ("and", "original"))
    _choice("kinematics.muscle_jerk", k.muscle_jerk, ("screen", "exact"))
    _choice("muscles.engine", cfg.muscles.engine, ("fast", "exact"))
    for p in k.planes:
        _choice("kinematics.planes", p, PLANES)
    if not k.planes:
        raise DeepDrawError(f"key 'kinematics.planes' is empty; expected at least one of {', '.join(PLANES)}")
    for key in ("n_candidates", "shard_size", "max_attempts"):
        _positive(f"kinematics.{key}", getattr(k, key))
    for key in ("max_tracing_error_cm", "max_joint_jerk"):
        _positive(f"kinematics.{key}", getattr(k, key), "a positive bound")
    for key in ("sizes", "speeds", "angles", "noises"):
        values = getattr(k, key)
        if not values:
            raise DeepDrawError(f"key 'kinematics.{key}' is empty; expected at least one value")
        for v in values:
            if key in ("sizes", "speeds"):
                _positive(f"kinematics.{key}", v, "positive factors")
            elif not math.isfinite(v):
                raise DeepDrawError(f"key 'kinematics.{key}' holds {v}; expected finite values")
    a = cfg.assembly
    for key in ("n_samples", "chunk"):
        _positive(f"assembly.{key}", getattr(a, key))
    if a.n_frames != N_FRAMES:
        raise DeepDrawError(
            f"key 'assembly.n_frames' is {a.n_frames}; expected {N_FRAMES} (the frame count of the "
            "PCRT files and of the networks' input)"
        )
    _positive("assembly.dt", a.dt, "a positive time step in seconds (0.015)")
    if not (math.isfinite(a.firing_noise) and a.firing_noise >= 0):
        raise DeepDrawError(f"key 'assembly.firing_noise' is {a.firing_noise}; expected >= 0")
    _fraction("assembly.test_fraction", a.test_fraction)
    n_test = int(round(a.n_samples * a.test_fraction))
    if not 1 <= n_test < a.n_samples:
        raise DeepDrawError(
            f"keys 'assembly.n_samples' = {a.n_samples} and 'assembly.test_fraction' = {a.test_fraction} "
            f"give {n_test} test and {a.n_samples - n_test} training samples; expected at least one of each "
            "(more samples, or another test_fraction)"
        )
    if a.n_samples > k.n_candidates:
        raise DeepDrawError(
            f"key 'assembly.n_samples' is {a.n_samples}, which exceeds kinematics.n_candidates "
            f"({k.n_candidates}); expected at most as many samples as candidates"
        )


def section_checks() -> list[Callable[[Config], object]]:
    """The checks of every section, in the order of :data:`SECTIONS`.

    The run, parallel and dataset sections are checked here; the other sections next to the stage
    that reads them (imported on call: the train check needs the model registry, hence torch).
    """
    from .nn.search_stage import check_search_section
    from .nn.stage import check_activations_section, check_train_section
    from .rsa.stage import check_rsa_config
    from .svm.stage import check_svm_section
    from .tuning.stage import check_tuning_config

    return [
        check_run_section,
        check_parallel_section,
        check_dataset_sections,
        check_svm_section,
        check_train_section,
        check_search_section,
        check_activations_section,
        lambda c: check_rsa_config(c.rsa),
        lambda c: check_tuning_config(c.tuning),
    ]


def validate_config(cfg: Config, where: str = "<config>") -> None:
    """Every value check of every section (:func:`section_checks`), run when a config is loaded.

    The first bad value is one :class:`DeepDrawError` naming ``where`` (the config file), the key, the
    value and what was expected, before any stage runs or any output is touched.
    """
    for check in section_checks():
        try:
            check(cfg)
        except DeepDrawError as e:
            raise DeepDrawError(f"{where}: {e}") from None


def reference_markdown() -> str:
    """``docs/config.md``: every section and key with its default and the comment beside it in the
    source (the test suite checks that the file is up to date)."""
    import inspect

    lines = [
        "# Configuration reference",
        "",
        "One TOML file configures a run; each `[section]` is read by one stage. Every key is optional (the",
        "default is shown). Unknown sections and keys are errors that name the nearest valid key. Every",
        "value of every section is checked when the config is loaded (before any stage runs or any output",
        "is touched): a bad one is one error naming the file, the key, the value and what was expected.",
        "A config file without dataset sections (`[characters]`, `[startpoints]`, `[kinematics]`,",
        "`[muscles]`, `[assembly]`) uses the dataset already in its `run.out_dir` and never makes one",
        "(`docs/report.md`). The",
        "resolved config is stored in every artifact (`config` attribute). Examples: `configs/demo.toml`,",
        "`configs/paper.toml`.",
        "",
        '**Composing configs.** A file may start with `base = "other.toml"` (a path relative to the file):',
        "it inherits every key of that config and overrides those it sets, key by key within a section",
        "(a list replaces the inherited list). Bases may have bases; a cycle is an error. The sections a",
        "composed config gives are those of the whole chain (so a base with dataset sections makes the",
        "config make its dataset). Every command that reads a config also takes",
        "`--set SECTION.KEY=VALUE` (repeatable, applied last, in order): VALUE is a TOML literal",
        "(`--set train.seeds=[1,2]`, `--set train.lr=1e-3`, `--set svm.decode=false`), or the bare text",
        "for a string key (`--set run.out_dir=runs/x`); a `--set` of a dataset key counts as a dataset",
        "section given. Both are checked like the file (an unknown section or key is an error naming it),",
        "and the resolved values are what the artifacts and the pipeline's stamps record (the stamps also",
        "list the files and overrides, `layers`). Example: `configs/paper-zoo.toml` inherits",
        "`configs/paper-train-best.toml`, which inherits `configs/paper-run.toml`.",
        "",
        "This page is generated from `src/deepdraw/config.py`",
        "(`python -c 'import deepdraw.config as c; print(c.reference_markdown())' > docs/config.md`).",
        "",
    ]
    for name, cls in SECTIONS.items():
        src = inspect.getsource(cls)
        comments = {
            m.group(1): (m.group(2) or "").strip()
            for m in re.finditer(r"^    (\w+): [^=\n]+=[^#\n]*(?:#\s*(.*))?$", src, re.M)
        }
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        lines += [f"## `[{name}]`", "", doc, "", "| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                d = f.default
            elif callable(f.default_factory):
                d = f.default_factory()
            else:  # not reached: every config field has a default
                raise TypeError(f"config field {name}.{f.name} has no default")
            dv = json.dumps(d)
            lines.append(f"| `{f.name}` | `{dv}` | {comments.get(f.name, '').replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
