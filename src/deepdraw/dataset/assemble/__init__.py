"""Selection, materialisation and the train/test files of the PCRT dataset (original: dataset/PCRDatasetArrange.ipynb, deleted in commit b290e9e, and ModifyInputRepresentations.ipynb).

Scales to the paper's 1,000,000 candidates without holding them in memory: the candidate shards
hold every candidate's latents and scores (a few hundred bytes each); selection works on those
columns only; then the selected movements are *re-generated* from their latents (the transforms and
the IK are deterministic) in chunks, as Dask tasks, each written atomically to a chunk file
(resumable); finally the chunk files are copied into ``pcrt_train.h5`` and ``pcrt_test.h5``.

Selection (the paper): accepted candidates only; duplicates (same UCI sample, plane, start point and
latents) dropped; per character ``n_samples / 20`` samples (the remainder spread over the first
characters), taken plane by plane in turn, lowest muscle jerk first. Each movement is placed at a
random onset in 320 frames, holding the first and last posture (same onset for every array). The split
is a seeded permutation: the first ``1 - test_fraction`` go to train (the networks take validation
from the end of the train file, as the original).

Muscle-jerk screening (``kinematics.muscle_jerk = "screen"``, the default): the shards hold, per
accepted candidate, a lower bound of its muscle jerk from the fast engine's tables alone, which *is*
the jerk when the tables covered every frame (``muscle_jerk_known``). The selection only needs the
jerks of the candidates that can make it: per character and plane, with ``K`` the most that plane can
give, any candidate whose bound exceeds the K-th smallest known jerk cannot be selected. The others
are re-generated and their exact jerk (fast engine with its OpenSim fallback) computed, in rounds
(lowest bounds first), until no candidate with an unknown jerk has a bound below the K-th known one.
The selection is then the one the exact jerks of all candidates would give (see :func:`screen_jerks`).

Modules, in the order the stage runs them (:func:`run_assemble`, in :mod:`.stage`):

* :mod:`.selection`: the shards' score columns, the selection and the train/test split;
* :mod:`.screening`: the muscle-jerk screening's algorithm (which jerks the selection needs);
* :mod:`.jerk_rounds`: the screening's rounds run over the workers, their work files, the kept OpenSim values;
* :mod:`.regeneration`: movements re-generated from their latents and the stored IK swivel angles;
* :mod:`.samples`: the samples (onset, muscle lengths, proprioceptive inputs), one chunk file per task;
* :mod:`.pcrt_files`: the attributes of the PCRT files and their writing from the chunk files.

Every name of the former single module ``deepdraw.dataset.assemble`` is importable from here.
"""

from ...contracts import (
    KIND_CANDIDATES,
    KIND_JERK_CHUNK,
    KIND_PCRT,
    KIND_PCRT_CHUNK,
    LATENT_KEYS,
    LETTERS,
    MUSCLES,
    N_CLASSES,
    SEED_STREAM_SAMPLE,
    SEED_STREAM_SPLIT,
)
from .jerk_rounds import (
    FILLED_KEYS,
    JerkRounds,
    JerkTask,
    balanced_tasks,
    known_by_id,
    known_for,
    run_jerk_chunk,
)
from .pcrt_files import PCRT_ATTRS, concat_chunks
from .regeneration import SwivelRef, load_swivel, regenerate, swivel_refs
from .samples import ChunkTask, fill_opensim_gaps, materialise, run_chunk
from .screening import screen_jerks
from .selection import SCORE_KEYS, SCREEN_KEYS, read_scores, select, split
from .stage import run_assemble

__all__ = [
    # the stage
    "run_assemble",
    # selection
    "SCORE_KEYS",
    "SCREEN_KEYS",
    "read_scores",
    "select",
    "split",
    # muscle-jerk screening
    "screen_jerks",
    "FILLED_KEYS",
    "JerkRounds",
    "JerkTask",
    "balanced_tasks",
    "known_by_id",
    "known_for",
    "run_jerk_chunk",
    # re-generation and samples
    "SwivelRef",
    "load_swivel",
    "regenerate",
    "swivel_refs",
    "ChunkTask",
    "fill_opensim_gaps",
    "materialise",
    "run_chunk",
    # the PCRT files
    "PCRT_ATTRS",
    "concat_chunks",
    # contract names the former module offered (the contract's objects)
    "KIND_CANDIDATES",
    "KIND_JERK_CHUNK",
    "KIND_PCRT",
    "KIND_PCRT_CHUNK",
    "LATENT_KEYS",
    "LETTERS",
    "MUSCLES",
    "N_CLASSES",
    "SEED_STREAM_SAMPLE",
    "SEED_STREAM_SPLIT",
]
