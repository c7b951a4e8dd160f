"""The fast training paths (deepdraw.nn.lowered, deepdraw.nn.precision) against the fp32 reference,
and models trained together (deepdraw.nn.group) against the same models trained alone."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nn_toy import TINY, make_pcrt
from nn_toy import train_config as cfg

import deepdraw.nn.trainer as train_mod
from deepdraw.config import config_from_dict
from deepdraw.errors import DeepDrawError
from deepdraw.nn.group import train_group
from deepdraw.nn.layers import same_padding
from deepdraw.nn.lowered import LoweredForward, band_index
from deepdraw.nn.models import build_model
from deepdraw.nn.precision import bf16_native, resolve_precision
from deepdraw.nn.train import train_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# every family, and kernel / stride combinations where the frame stride exceeds, divides or does not
# divide the kernel, with and without row padding
NAMES = [
    "spatial_temporal_4_8-16-16-32_32-32-64-64_7293",
    "spatiotemporal_4_8-8-32-64_7272",
    "temporal_spatial_2_8-16_16-8_3191",
    "spatial_temporal_2_4-4_4-4_1129",
    "spatiotemporal_3_4-4-8_2323",
    # stride 5 > kernel 3; not kernel 1: oneDNN's AVX2 1x1-convolution weight gradient (torch 2.13) hung
    # or corrupted memory for kernel 1, stride 5 on an AVX2-only EPYC (kernels 3-9 are what the search draws)
    "spatiotemporal_2_4-4_3535",
    "temporal_spatial_1_4_4_9929",
    "lstm_2_4-8_16",
    "lstm_1_4_8_k3s2",
]


def _inputs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 25, 320, 2, generator=g) * torch.tensor([10.0, 50.0]) + torch.tensor([100.0, 0.0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pcrt")
    return make_pcrt(d / "pcrt_train.h5", 80, 0), make_pcrt(d / "pcrt_test.h5", 40, 1)


# ------------------------------------------------------------------------------- lowered forward
def _conv_reference(w, x, stride):
    """Independent reference: TF 'SAME' conv by explicit zero padding and F.conv2d."""
    kh, kw = w.shape[2:]
    ph = same_padding(x.shape[2], kh, stride[0])
    pw = same_padding(x.shape[3], kw, stride[1])
    return F.conv2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1])), w, None, stride)


@pytest.mark.parametrize(
    "rows,kernel,stride", [(25, (7, 1), (2, 1)), (7, (3, 3), (2, 2)), (13, (5, 5), (1, 1))]
)
def test_band_matrix_is_the_conv(rows, kernel, stride):
    """One frame through the banded matrix equals the conv of that frame (frame kernel 1 here)."""
    from deepdraw.nn.layers import ConvBlock

    block = ConvBlock(3, 4, (kernel[0], 1), (stride[0], 1))
    idx, rows_out = band_index(block, rows)
    w = block.conv.weight.detach()
    band = torch.cat([w.reshape(-1), w.new_zeros(1)])[idx]
    x = torch.randn(2, 3, rows, 1)
    want = _conv_reference(w, x, (stride[0], 1))[..., 0]  # [B, Cout, rows_out]
    got = (x[..., 0].permute(0, 2, 1).reshape(2, -1) @ band).view(2, rows_out, 4).permute(0, 2, 1)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("task", ["art", "tdt"])
def test_lowered_fp32_equals_reference(name, task):
    """Outputs and every parameter's gradient equal the reference path up to float32 rounding."""
    model = build_model(name, task, seed=3).eval()
    x = _inputs()
    fast = LoweredForward(model)
    ref = model(x)
    got = fast(x)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    grads = []
    for fn in (model, fast):
        model.zero_grad()
        fn(x).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for k, g in grads[0].items():
        assert torch.allclose(grads[1][k], g, rtol=1e-3, atol=1e-5 * g.abs().max().item() + 1e-9), k


@pytest.mark.parametrize("name", NAMES[:3])
def test_lowered_bf16_within_tolerance(name):
    model = build_model(name, "art", seed=3).eval()
    x = _inputs()
    ref = model(x)
    got = LoweredForward(model, torch.bfloat16)(x)
    assert got.dtype == torch.float32
    err = (got - ref).abs().max().item() / ref.abs().max().item()
    assert err < 0.05  # bfloat16 keeps 8 bits: ~1 % per product, a few % after eight layers
    assert not torch.allclose(got, ref, atol=1e-6)  # it really ran in bfloat16


def test_lowered_dropout_from_its_own_generator():
    model = build_model(TINY, "art", seed=1).train()
    fast = LoweredForward(model)
    x = _inputs(4)
    fast.generator = torch.Generator().manual_seed(7)
    a = fast(x)
    torch.manual_seed(0)  # the global RNG does not matter
    fast.generator = torch.Generator().manual_seed(7)
    b = fast(x)
    assert torch.equal(a, b)
    fast.generator = torch.Generator().manual_seed(8)
    assert not torch.equal(a, fast(x))
    model.eval()  # no dropout in eval mode: the model's own forward
    assert torch.allclose(fast(x), model(x), atol=1e-5) and not torch.allclose(fast(x), a)


def test_lowered_dropout_keeps_the_right_fraction_scaled():
    """The fast path's dropout mask: each unit kept with probability 1 - p, kept units scaled by 1 / (1 - p)."""
    model = build_model(TINY, "art", seed=1)
    seen: list[torch.Tensor] = []
    model.readout.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    fast = LoweredForward(model)
    x = _inputs(64)
    model.eval()
    fast(x)
    model.train()
    fast.generator = torch.Generator().manual_seed(3)
    fast(x)
    clean, dropped = seen
    keep = 1.0 - model.dropout.p
    live = clean != 0
    kept = dropped[live] != 0
    n = int(live.sum())
    assert n > 5_000
    # binomial: the kept fraction within 5 standard deviations of keep
    assert abs(kept.float().mean().item() - keep) < 5 * (keep * (1 - keep) / n) ** 0.5
    torch.testing.assert_close(dropped[live][kept], clean[live][kept] / keep, rtol=1e-6, atol=0)
    assert torch.all(dropped[~live] == 0)


# ------------------------------------------------------------------------------ fast vs reference
def test_precision_resolution_and_bad_values(files, tmp_path, caplog, monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("bf16", "fast32")
    assert resolve_precision("auto", cpu, "art") == ("bf16" if bf16_native(cpu) else "fast32")
    # hand position is regressed in float32 (benchmarks/tdt_precision.py); an explicit bf16 is kept
    assert resolve_precision("auto", cpu, "tdt") == resolve_precision("auto", cpu, "tdt_pv") == "fast32"
    assert resolve_precision("bf16", cpu, "tdt") == "bf16"
    monkeypatch.setattr("deepdraw.nn.precision._WARNED", set())
    with caplog.at_level(logging.WARNING, logger="deepdraw.nn.precision"):
        resolve_precision("bf16", cpu)
    # an explicit bf16 on a CPU that emulates bfloat16 (30-40x slower) is kept, with a warning
    assert ("no native bfloat16" in caplog.text) == (not bf16_native(cpu))
    caplog.clear()
    with monkeypatch.context() as m, caplog.at_level(logging.WARNING, logger="deepdraw.nn.precision"):
        m.setattr("deepdraw.nn.precision.bf16_native", lambda device: False)
        m.setattr("deepdraw.nn.precision._WARNED", set())
        assert resolve_precision("bf16", cpu) == resolve_precision("bf16", cpu, "tdt") == "bf16"
        assert resolve_precision("auto", cpu, "art") == "fast32"
        # once per device type (a search or seed group resolves it per model); auto never warns
        assert caplog.text.count("no native bfloat16") == 1 and "AVX512-BF16" in caplog.text
    assert train_model(cfg(files, tmp_path / "r", task="tdt", max_epochs=1)).metrics["precision"] == "fast32"
    with pytest.raises(DeepDrawError, match="train.precision.*'fp8'.*fp32"):
        config_from_dict({"train": {"precision": "fp8"}}, "bad.toml")
    with pytest.raises(DeepDrawError, match="train.group"):
        config_from_dict({"train": {"group": "everything"}}, "bad.toml")
    with pytest.raises(DeepDrawError, match="precision is 'fp8'"):
        train_model(cfg(files, tmp_path / "x", precision="fp8"))
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_tf32_only_for_the_bf16_path_on_cuda(files, tmp_path):
    """The backend flags are process-wide: each run sets them (they can be set without a GPU)."""
    from deepdraw.nn.trainer import configure_torch

    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    cuda = torch.device("cuda")
    try:
        for precision, want in (("bf16", True), ("fast32", False), ("bf16", True), ("fp32", False)):
            configure_torch(cfg(files, tmp_path / "x"), cuda, precision)
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (want, want)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def test_fast_and_reference_first_steps_agree(files):
    """Same initial weights and batches: the losses of the first steps agree within bf16 tolerance."""
    from deepdraw.nn.data import BatchStream
    from deepdraw.nn.targets import TargetSpec

    losses = {}
    for precision in ("fp32", "fast32", "bf16"):
        model = build_model(TINY, "art", seed=1).train()
        model.dropout.p = 0.0  # same function on both paths (dropout streams differ by design)
        fwd = (
            model
            if precision == "fp32"
            else LoweredForward(model, {"fast32": torch.float32}.get(precision, torch.bfloat16))
        )
        opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        stream = BatchStream(files[0], (0, 64), 16, TargetSpec.for_model(model), shuffle=True, seed=1)
        out = []
        for x, y in stream.epoch(1):
            opt.zero_grad()
            loss = F.cross_entropy(fwd(x), y)
            loss.backward()
            opt.step()
            out.append(loss.item())
        losses[precision] = np.array(out)
    assert np.allclose(losses["fast32"], losses["fp32"], rtol=1e-4)
    assert np.allclose(losses["bf16"], losses["fp32"], rtol=0.05, atol=0.02)
    assert losses["bf16"][-1] < losses["bf16"][0]  # it learns


def test_fast_path_uses_fused_adam_with_the_same_updates(files, tmp_path):
    """The fast paths step Adam in one fused kernel, the fp32 reference with torch's default loop; the
    two give the same weights (float32 rounding) from the same gradients."""
    from deepdraw.nn.train import Trainer

    assert Trainer(cfg(files, tmp_path / "fast", precision="auto")).optimizer.defaults["fused"] is True
    assert not Trainer(cfg(files, tmp_path / "ref", precision="fp32")).optimizer.defaults["fused"]
    weights = {}
    for fused in (None, True):
        model = build_model(TINY, "art", seed=3)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, fused=fused)
        gen = torch.Generator().manual_seed(0)
        for _ in range(5):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        weights[fused] = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    start = torch.cat([p.detach().reshape(-1) for p in build_model(TINY, "art", seed=3).parameters()])
    assert (weights[None] - start).abs().max() > 1e-3  # the steps moved the weights
    torch.testing.assert_close(weights[True], weights[None], rtol=1e-6, atol=1e-7)


def test_fast_path_trains_deterministically_and_resumes(files, tmp_path):
    import shutil

    a = train_model(cfg(files, tmp_path / "a", precision="bf16", max_epochs=3))
    assert a.metrics["precision"] == "bf16" and a.metrics["test_accuracy"] >= 0.9  # chance 0.25
    first = (tmp_path / "a" / "best.pt").read_bytes()
    shutil.rmtree(tmp_path / "a")  # the same config (same out_dir, stored in the file) again
    train_model(cfg(files, tmp_path / "a", precision="bf16", max_epochs=3))
    assert (tmp_path / "a" / "best.pt").read_bytes() == first
    # killed after one epoch, resumed: the same weights and dropout stream as uninterrupted
    train_model(cfg(files, tmp_path / "c", precision="bf16", max_epochs=1))
    c = train_model(cfg(files, tmp_path / "c", precision="bf16", max_epochs=3))
    assert [r["train_loss"] for r in c.metrics["epochs"]] == [r["train_loss"] for r in a.metrics["epochs"]]
    la = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    lc = torch.load(tmp_path / "c" / "last.pt", weights_only=True)
    for k, v in la["state_dict"].items():
        assert torch.equal(v, lc["state_dict"][k]), k
    assert torch.equal(la["rng"]["dropout"], lc["rng"]["dropout"])
    # the reference path cannot resume a fast-path run's dropout stream silently, and vice versa
    train_model(cfg(files, tmp_path / "d", precision="fp32", max_epochs=1))
    with pytest.raises(DeepDrawError, match="precision 'fp32'.*resolves to 'bf16'"):
        train_model(cfg(files, tmp_path / "d", precision="bf16", max_epochs=2))
    with pytest.raises(DeepDrawError, match="precision 'bf16'.*resolves to 'fp32'"):
        train_model(cfg(files, tmp_path / "c", precision="fp32", max_epochs=4))
    # "auto" resumes a fast-path run in the fast path it started with: a TDT run begun in bf16 (what
    # "auto" chose before TDT went to float32) ends in bf16, the same as uninterrupted
    whole = train_model(cfg(files, tmp_path / "t1", task="tdt", precision="bf16", max_epochs=2))
    train_model(cfg(files, tmp_path / "t2", task="tdt", precision="bf16", max_epochs=1))
    resumed = train_model(cfg(files, tmp_path / "t2", task="tdt", precision="auto", max_epochs=2))
    assert resumed.metrics["precision"] == "bf16"
    assert [r["train_loss"] for r in resumed.metrics["epochs"]] == [
        r["train_loss"] for r in whole.metrics["epochs"]
    ]
    with pytest.raises(DeepDrawError, match="precision 'bf16'.*resolves to 'fp32'"):
        train_model(cfg(files, tmp_path / "t2", task="tdt", precision="fp32", max_epochs=3))


# ---------------------------------------------------------------------------------------- groups
def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize("precision,threads", [("fp32", None), ("fast32", 1), ("bf16", 2)])
def test_group_equals_models_trained_alone(files, tmp_path, precision, threads):
    seeds = [1, 2, 3]
    group = train_group(
        [cfg(files, tmp_path / f"g{s}", seed=s, precision=precision) for s in seeds], threads=threads
    )
    for s, res in zip(seeds, group, strict=True):
        alone = train_model(cfg(files, tmp_path / f"a{s}", seed=s, precision=precision, data_seed=1))
        assert res.metrics["data_seed"] == 1 and res.metrics["model_name"] == alone.metrics["model_name"]
        wg, wa = _weights(res.best_path), _weights(alone.best_path)
        for k in wa:
            assert torch.allclose(wg[k], wa[k], atol=1e-6, rtol=0), (s, k)
        assert [r["action"] for r in res.metrics["epochs"]] == [r["action"] for r in alone.metrics["epochs"]]
        assert res.metrics["test_accuracy"] == pytest.approx(alone.metrics["test_accuracy"])
    # different seeds really are different models
    assert not torch.equal(
        _weights(group[0].best_path)["readout.weight"], _weights(group[1].best_path)["readout.weight"]
    )


def test_group_schedules_follow_their_own_curves(files, tmp_path, monkeypatch):
    """Scripted validation losses per model: one model stops at epoch 3, the other runs to the cap."""
    real = train_mod.evaluate_stream
    script = {"1": iter([1.0, 2.0, 2.0, 2.0, 2.0, 2.0]), "2": iter([1.0, 0.9, 0.8, 0.7, 0.6, 0.5])}

    def fake(model, stream, targets, quiet, desc, **kw):
        r = real(model, stream, targets, quiet, desc, **kw)
        if desc == "val":
            r["loss"] = next(script[str(model.spec.seed)])
        return r

    monkeypatch.setattr(train_mod, "evaluate_stream", fake)
    res = train_group([cfg(files, tmp_path / f"s{s}", seed=s, patience=1, max_epochs=5) for s in (1, 2)])
    acts = [[r["action"] for r in m.metrics["epochs"]] for m in res]
    assert acts[0] == ["improved", "decay", "stop"]
    assert acts[1] == ["improved"] * 5
    assert res[0].metrics["stopped_by"] == "schedule" and res[1].metrics["stopped_by"] == "max_epochs"
    lr = [[r["lr"] for r in m.metrics["epochs"]] for m in res]
    assert lr[0] == [5e-3, 5e-3, pytest.approx(5e-3 / 4)] and set(lr[1]) == {5e-3}
    # the stopped model's files were not touched after it stopped
    assert torch.load(tmp_path / "s1" / "last.pt", weights_only=True)["epoch"] == 3
    assert json.loads((tmp_path / "s2" / "metrics.json").read_text())["epochs_run"] == 5


def test_group_refuses_mismatched_members(files, tmp_path):
    """Refused before anything is written."""
    with pytest.raises(DeepDrawError, match="one batch size"):
        train_group([cfg(files, tmp_path / "a", seed=1), cfg(files, tmp_path / "b", seed=2, batch_size=8)])
    with pytest.raises(DeepDrawError, match="share val_fraction"):
        train_group(
            [cfg(files, tmp_path / "c", seed=1), cfg(files, tmp_path / "d", seed=2, val_fraction=0.2)]
        )
    with pytest.raises(DeepDrawError, match="share task"):
        train_group([cfg(files, tmp_path / "e", seed=1), cfg(files, tmp_path / "f", seed=2, task="tdt")])
    with pytest.raises(DeepDrawError, match="one data_seed"):
        train_group(
            [cfg(files, tmp_path / "g", seed=1, data_seed=1), cfg(files, tmp_path / "h", seed=2, data_seed=2)]
        )
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fast_path_on_cuda(files, tmp_path):
    """On CUDA: bf16 + TF32 by default, the training rows resident on the GPU, the model learns, and
    the lowered bf16 forward on the GPU matches the CPU reference within bf16 tolerance."""
    from deepdraw.nn.train import Trainer

    t = Trainer(cfg(files, tmp_path / "probe", device="cuda"))
    assert t.precision == "bf16" and torch.backends.cuda.matmul.allow_tf32
    assert t.train_stream.cached
    x, _ = next(iter(t.train_stream.epoch(1)))
    assert x.device.type == "cuda" and t.train_stream._x.device.type == "cuda"
    res = train_model(cfg(files, tmp_path / "run", device="cuda", max_epochs=4))
    assert res.metrics["device"].startswith("cuda") and res.metrics["test_accuracy"] >= 0.9
    model = build_model(NAMES[0], "art", seed=3).eval()
    xs = _inputs()
    ref = model(xs)
    got = LoweredForward(model.to("cuda"), torch.bfloat16)(xs.to("cuda")).cpu()
    assert (got - ref).abs().max().item() / ref.abs().max().item() < 0.05
