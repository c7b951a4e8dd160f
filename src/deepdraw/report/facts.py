"""The paper's numbers that a run can reproduce: one registry, read by the report's "paper vs this run" table.

Every :class:`Fact` names a *run value* by its key. Run values are a flat namespace built by
:func:`deepdraw.report.build.collect_values` from the run folder:

* ``dataset.*``: sizes read from ``dataset/pcrt_{train,test}.h5`` (``n_samples``, ``n_train``, ``n_test``,
  ``n_classes``, ``n_horizontal_planes``, ``n_vertical_planes``, ``test_percent``) and
  ``dataset.n_candidates`` from the config;
* ``svm.<key>``: every number of ``svm/summary.json`` as written by the SVM stage;
* ``models.<metric>.<family>``: means over seeds of the trained models of ``models/summary.csv`` (best
  architecture of each family), with ``.sem`` beside them; ``models.untrained_art_test_accuracy``;
* ``rsa.*``: oracle similarity (Pearson r of the layer RDM with the category oracle) from
  ``rsa/rsa_oracle.csv``: ``rsa.oracle_final_art.<family>`` (last layer, trained ART, mean over seeds),
  ``rsa.oracle_untrained_max`` (highest layer mean of any untrained model), ``rsa.oracle_input.<input>``;
  plus every number of ``rsa/summary.json``;
* ``tuning.<key>``: every number of ``tuning/summary.json`` (:func:`deepdraw.tuning.stage.headline`) and
  ``tuning.label_selectivity_final`` (final layer of the trained ART spatial-temporal models, mean over
  seeds of the per-model median index; from ``tuning/tuning_summary.csv`` or the summary's per-model dict).

``source`` says where a reader finds the number: an eLife value cites the paper by its own figure,
table or section (``"Sandbrink et al. 2023, Fig. 3E; §Results ..."``; Sandbrink, Mamidanna et al., eLife
2023;12:e81499), a preprint-era value the file of the original repository it was read from
(``"amathislab/DeepDraw, svm-analysis/svm_results.p"``: pickles committed with the 2020 preprint, when the
input was a 1-channel spindle firing rate; rough checks, not eLife targets). ``era`` tells the two apart.
Accuracies are compared in percent: a run value <= 1 of a ``percent`` fact is a fraction and is shown x 100.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Fact", "FACTS", "PAPER_SCALE", "FAMILIES"]

FAMILIES = ("spatial_temporal", "spatiotemporal", "lstm")
"""The three network families of the eLife paper, in its order."""


@dataclass(frozen=True)
class Fact:
    """One number of the paper and the run value it is compared with."""

    key: str  # run value key (see the module docs)
    what: str  # what the number is
    paper: float | None  # the paper's value, in ``unit`` (None: qualitative / not given as a number)
    paper_text: str  # as the paper states it (with spread and N)
    unit: str  # "%", "cm", "" ...
    source: str  # the paper's figure / table / section, or the original repository's file
    scale: str  # which scale of the run to show beside it: dataset, svm, models, rsa, tuning
    spread_key: str = ""  # run value key of the spread (SD or SEM), if any
    spread_label: str = ""  # "SD", "SEM"
    percent: bool = False  # compared in percent; a run value <= 1 is a fraction
    era: str = "eLife"  # "eLife" or "preprint" (pickle era; rough check only)
    digits: int = 3  # significant digits shown


PAPER = "Sandbrink et al. 2023"
"""How a source names the eLife paper (Sandbrink, Mamidanna et al., eLife 2023;12:e81499)."""
ORIGINAL = "amathislab/DeepDraw"
"""How a source names the original repository (its files are cited by path)."""

_DS = f"{PAPER}, §Results “Muscle spindle-based biomechanical tasks”"
_DS_PLANES = f"{PAPER}, Table 1"
_SVM_PAIRS = f"{PAPER}, Fig. 3B; §Results “Recognizing characters from muscle activity is challenging”"
_SVM_BELOW = f"{PAPER}, Fig. 3B (caption)"
_SVM_MULTI = f"{PAPER}, Fig. 3C"
_SVM_LINEAR = f"{PAPER}, Fig. 3C; §Results “Recognizing characters from muscle activity is challenging”"
_SVM_PRE = f"{ORIGINAL}, svm-analysis/svm_results.p"
_NN = f"{PAPER}, Fig. 3E; §Results “Architecture search and representational changes”"
_NN_PV = f"{PAPER}, §Results “Single unit encoding properties and decodability” (TDT-PV)"
_NN_UNTRAINED = f"{PAPER}, §Results “Architecture search and representational changes”"
_RSA = f"{ORIGINAL}, repr-analysis/analyzed_models_idealobs_rdm.p"
_RSA_INPUTS = f"{ORIGINAL}, repr-analysis/kinematics_idealobs_rdm.p"
_TUN = f"{PAPER}, §Results “Single unit encoding properties and decodability”"
_TUN_INV_H = f"{PAPER}, Fig. 7—figure supplement 1B; §Results “Uniformity and coding invariance”"
_TUN_INV_V = f"{PAPER}, Fig. 7—figure supplement 1C; §Results “Uniformity and coding invariance”"

_FAM_LABEL = {"spatial_temporal": "spatial-temporal", "spatiotemporal": "spatiotemporal", "lstm": "LSTM"}

_SVM_INPUTS = (
    # input key, label, preprint pairwise mean, SD, preprint multiclass
    ("endeffector_coords", "end-effector", 88.7, 11.1, 37.1),
    ("joint_coords", "joint angles", 85.0, 11.4, 31.3),
    ("muscle_coords", "muscle lengths", 86.0, 13.1, 31.9),
    ("spindle_firing", "spindle firing (P&G)", 80.7, 14.2, 23.4),
)


def _dataset_facts() -> list[Fact]:
    """The dataset's sizes: candidates, samples, train/test split, classes and planes."""
    return [
        Fact(
            "dataset.n_candidates",
            "candidate end-effector trajectories generated",
            1_000_000,
            "1,000,000",
            "",
            _DS,
            "dataset",
            digits=0,
        ),
        Fact(
            "dataset.n_samples",
            "samples in the PCRT dataset (train + test files)",
            200_000,
            "200,000",
            "",
            _DS,
            "dataset",
            digits=0,
        ),
        Fact(
            "dataset.n_train",
            "training file (train + validation, 72 % + 8 %)",
            160_000,
            "144,000 + 16,000 (derived)",
            "",
            _DS,
            "dataset",
            digits=0,
        ),
        Fact("dataset.n_test", "test file (20 %)", 40_000, "40,000 (derived)", "", _DS, "dataset", digits=0),
        Fact("dataset.test_percent", "test share of the samples", 20.0, "20 %", "%", _DS, "dataset"),
        Fact("dataset.n_classes", "characters (classes)", 20, "20", "", _DS, "dataset", digits=0),
        Fact(
            "dataset.n_horizontal_planes",
            "horizontal writing planes",
            26,
            "26",
            "",
            _DS_PLANES,
            "dataset",
            digits=0,
        ),
        Fact(
            "dataset.n_vertical_planes",
            "vertical writing planes",
            18,
            "18",
            "",
            _DS_PLANES,
            "dataset",
            digits=0,
        ),
    ]


def _svm_facts() -> list[Fact]:
    """The SVM and linear baselines: pairwise and multi-class accuracies, the TDT linear decoder."""
    f: list[Fact] = [
        Fact(
            "svm.pairwise_mean_acc_spindle_info",
            "pairwise SVM accuracy, proprioceptive inputs (length + velocity), mean over 190 pairs",
            86.6,
            "86.6 ± 12.5 % (SD, N = 190)",
            "%",
            _SVM_PAIRS,
            "svm",
            spread_key="svm.pairwise_std_acc_spindle_info",
            spread_label="SD",
            percent=True,
        ),
        Fact(
            "svm.pairwise_frac_below_70_spindle_info",
            "share of character pairs below 70 % pairwise accuracy, proprioceptive inputs",
            12.0,
            "12 % of pairs",
            "%",
            _SVM_BELOW,
            "svm",
            percent=True,
        ),
        Fact(
            "svm.pairwise_frac_below_70_spindle_firing",
            "share of character pairs below 70 % pairwise accuracy, spindle firing (P&G)",
            27.0,
            "27 % of pairs",
            "%",
            _SVM_PRE,
            "svm",
            percent=True,
            era="preprint",
        ),
        Fact(
            "svm.tdt_linear_error_cm",
            "linear regression decoding of hand position (TDT baseline)",
            1.72,
            "1.72 cm",
            "cm",
            _SVM_LINEAR,
            "svm",
        ),
    ]
    for key, label, mean, sd, _multi in _SVM_INPUTS:
        f.append(
            Fact(
                f"svm.pairwise_mean_acc_{key}",
                f"pairwise SVM accuracy, {label}",
                mean,
                f"{mean} ± {sd} %",
                "%",
                _SVM_PRE,
                "svm",
                spread_key=f"svm.pairwise_std_acc_{key}",
                spread_label="SD",
                percent=True,
                era="preprint",
            )
        )
    for key, label, _mean, _sd, multi in _SVM_INPUTS:
        f.append(
            Fact(
                f"svm.multiclass_acc_{key}",
                f"multi-class (one-vs-one) SVM accuracy, {label}",
                multi,
                f"{multi} %",
                "%",
                _SVM_PRE,
                "svm",
                percent=True,
                era="preprint",
            )
        )
    f.append(
        Fact(
            "svm.multiclass_acc_spindle_info",
            "multi-class (one-vs-one) SVM accuracy, proprioceptive inputs",
            None,
            "“poor” (Fig. 3C only)",
            "%",
            _SVM_MULTI,
            "svm",
            percent=True,
        )
    )
    return f


def _network_facts() -> list[Fact]:
    """The trained networks: ART accuracy, TDT and TDT-PV errors of each family, untrained chance."""
    f: list[Fact] = []
    art = {"spatial_temporal": (98.86, 0.04), "spatiotemporal": (97.93, 0.03), "lstm": (99.56, 0.04)}
    tdt = {"spatial_temporal": (0.22, 0.005), "spatiotemporal": (0.13, 0.005), "lstm": (0.05, 0.01)}
    pv = {"spatial_temporal": (0.26, 0.01), "spatiotemporal": (0.20, 0.01), "lstm": (0.09, 0.006)}
    for fam in FAMILIES:
        m, s = art[fam]
        f.append(
            Fact(
                f"models.art_test_accuracy.{fam}",
                f"ART test accuracy, best {_FAM_LABEL[fam]}",
                m,
                f"{m} ± {s} % (SEM, N = 5)",
                "%",
                _NN,
                "models",
                spread_key=f"models.art_test_accuracy.{fam}.sem",
                spread_label="SEM",
                percent=True,
                digits=4,
            )
        )
    for fam in FAMILIES:
        m, s = tdt[fam]
        f.append(
            Fact(
                f"models.tdt_test_error_cm.{fam}",
                f"TDT position error, best {_FAM_LABEL[fam]}",
                m,
                f"{m} ± {s} cm (SEM, N = 5)",
                "cm",
                _NN,
                "models",
                spread_key=f"models.tdt_test_error_cm.{fam}.sem",
                spread_label="SEM",
            )
        )
    for fam in FAMILIES:
        m, s = pv[fam]
        f.append(
            Fact(
                f"models.tdt_pv_test_error_cm.{fam}",
                f"TDT-PV position error, {_FAM_LABEL[fam]}",
                m,
                f"{m} ± {s} cm (SEM, N = 5)",
                "cm",
                _NN_PV,
                "models",
                spread_key=f"models.tdt_pv_test_error_cm.{fam}.sem",
                spread_label="SEM",
            )
        )
    f.append(
        Fact(
            "models.untrained_art_test_accuracy",
            "untrained networks, ART test accuracy (chance)",
            5.0,
            "5 % (chance)",
            "%",
            _NN_UNTRAINED,
            "models",
            spread_key="models.untrained_art_test_accuracy.sd",
            spread_label="SD",
            percent=True,
        )
    )
    return f


def _rsa_facts() -> list[Fact]:
    """The oracle RDM similarities of the final layers, the untrained models and the inputs."""
    return [
        Fact(
            "rsa.oracle_final_art.spatial_temporal",
            "oracle RDM similarity, final layer, ART spatial-temporal (paper's value: another architecture)",
            0.214,
            "0.214 (temporal3, mean of 5 seeds) of the preprint's S-5272 architecture, not S-7293",
            "",
            _RSA,
            "rsa",
            era="preprint",
            spread_key="rsa.oracle_final_art.spatial_temporal.sd",
            spread_label="SD",
        ),
        Fact(
            "rsa.oracle_final_art.spatiotemporal",
            "oracle RDM similarity, final layer, ART spatiotemporal",
            0.181,
            "0.181 (mean of 5 seeds)",
            "",
            _RSA,
            "rsa",
            era="preprint",
            spread_key="rsa.oracle_final_art.spatiotemporal.sd",
            spread_label="SD",
        ),
        Fact(
            "rsa.oracle_untrained_max",
            "oracle RDM similarity, untrained models, highest layer",
            0.013,
            "≤ 0.013 everywhere",
            "",
            _RSA,
            "rsa",
            era="preprint",
        ),
        Fact(
            "rsa.oracle_input.spindle_info",
            "oracle RDM similarity, proprioceptive inputs",
            0.015,
            "0.015 (1-channel spindle firing)",
            "",
            _RSA_INPUTS,
            "rsa",
            era="preprint",
        ),
        Fact(
            "rsa.oracle_input.muscles",
            "oracle RDM similarity, muscle lengths",
            0.011,
            "0.011",
            "",
            _RSA_INPUTS,
            "rsa",
            era="preprint",
        ),
        Fact(
            "rsa.oracle_input.joints",
            "oracle RDM similarity, joint angles",
            0.007,
            "0.007",
            "",
            _RSA_INPUTS,
            "rsa",
            era="preprint",
        ),
        Fact(
            "rsa.oracle_input.hand",
            "oracle RDM similarity, end-effector",
            0.005,
            "0.005",
            "",
            _RSA_INPUTS,
            "rsa",
            era="preprint",
        ),
    ]


def _tuning_facts() -> list[Fact]:
    """The single-unit numbers: spindle tuning medians, PD invariance and label selectivity."""
    return [
        Fact(
            "tuning.spindle_length_position_median",
            "spindle length channel: position tuning, median R²",
            0.36,
            "0.36 (N = 25)",
            "",
            _TUN,
            "tuning",
        ),
        Fact(
            "tuning.spindle_length_direction_median",
            "spindle length channel: direction tuning, median R²",
            0.001,
            "0.001",
            "",
            _TUN,
            "tuning",
        ),
        Fact(
            "tuning.spindle_length_dirspeed_median",
            "spindle length channel: velocity tuning, median R²",
            0.0026,
            "0.0026",
            "",
            _TUN,
            "tuning",
        ),
        Fact(
            "tuning.spindle_velocity_direction_median",
            "spindle velocity channel: direction tuning, median R²",
            0.58,
            "0.58",
            "",
            _TUN,
            "tuning",
        ),
        Fact(
            "tuning.spindle_velocity_dirspeed_median",
            "spindle velocity channel: velocity tuning, median R²",
            0.83,
            "0.83",
            "",
            _TUN,
            "tuning",
        ),
        Fact(
            "tuning.spindle_velocity_position_median",
            "spindle velocity channel: position tuning, median R²",
            0.0024,
            "0.0024",
            "",
            _TUN,
            "tuning",
        ),
        Fact(
            "tuning.spindle_pd_invariance_horizontal",
            "spindle preferred-direction deviation across horizontal planes (MAD, rad)",
            0.225,
            "0.225 (N = 25)",
            "",
            _TUN_INV_H,
            "tuning",
        ),
        Fact(
            "tuning.spindle_pd_invariance_vertical",
            "spindle preferred-direction deviation across vertical planes (MAD, rad)",
            0.439,
            "0.439 (N = 16)",
            "",
            _TUN_INV_V,
            "tuning",
        ),
        Fact(
            "tuning.label_selectivity_final",
            "label selectivity index, final layer, ART spatial-temporal (median over units)",
            0.210,
            "0.210 ± 0.006 (SEM, N = 5)",
            "",
            _TUN,
            "tuning",
            spread_key="tuning.label_selectivity_final.sem",
            spread_label="SEM",
        ),
        Fact(
            "tuning.label_selectivity_final_unit_max",
            "label selectivity index, final layer, ART spatial-temporal, highest unit",
            0.40,
            "never above 0.40",
            "",
            _TUN,
            "tuning",
        ),
    ]


def _facts() -> list[Fact]:
    """Every fact, in table order: dataset, SVM, networks, RSA, single units."""
    return _dataset_facts() + _svm_facts() + _network_facts() + _rsa_facts() + _tuning_facts()


FACTS: list[Fact] = _facts()
"""The registry: every paper number the report compares, in table order."""

PAPER_SCALE: dict[str, str] = {
    "dataset": "1,000,000 candidates → 200,000 samples",
    "svm": "160,000 train / 40,000 test samples, 190 pairs",
    "models": "5 seeds, ≤ 50 epochs, 144,000 train samples",
    "rsa": "4,000 test samples (200 per class)",
    "tuning": "4,000 test samples (code), 5 seeds",
}
"""The paper's scale of each group of facts, shown beside the run's."""
