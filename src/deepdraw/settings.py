"""The schema of the run configuration: one dataclass per TOML section, and :class:`Config`, the whole.

Every section of a run's TOML file is a dataclass below, with its defaults and, in the comment beside each
field, its unit and meaning (``docs/config.md`` is generated from them). This module only declares the
settings; reading a file, composing ``base`` chains, ``--set`` overrides and the value checks run at
load are :mod:`deepdraw.config` (which re-exports every name here, so
``from deepdraw.config import Config, TrainConfig`` works as before). Stage modules that only need the
settings import them from here, so the config loader can import every stage's section check without
an import cycle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contracts import N_FRAMES

__all__ = [
    "PLANES",
    "DATASET_SECTION_NAMES",
    "RunConfig",
    "ParallelConfig",
    "CharactersConfig",
    "StartpointsConfig",
    "KinematicsConfig",
    "MusclesConfig",
    "AssemblyConfig",
    "SvmConfig",
    "TrainConfig",
    "SearchConfig",
    "ActivationsConfig",
    "RsaConfig",
    "TuningConfig",
    "EncodeConfig",
    "PredictConfig",
    "ReportConfig",
    "SECTIONS",
    "Config",
]

PLANES = ("horizontal", "vertical")
"""The writing planes of the dataset (``[kinematics] planes``)."""

DATASET_SECTION_NAMES = ("characters", "startpoints", "kinematics", "muscles", "assembly")
"""The sections that make a dataset (a config without them uses an existing one)."""


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
    precision: str = "auto"  # "auto" (fast path: bf16 where native for ART, fast32 for TDT), "bf16", "fast32" or "fp32" (exact reference)
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
    tsne_seeds: list[int] = field(default_factory=list)  # seeds of the models embedded; [] = every model
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
"""Every section of the TOML file and its dataclass, in the order of ``docs/config.md``."""


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
