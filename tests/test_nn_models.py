"""deepdraw.nn layers, models, names, centres and search grid against the paper and hand-made references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepdraw.errors import DeepDrawError
from deepdraw.nn.layers import Conv2dSame, LayerNormHWC, same_padding
from deepdraw.nn.models import (
    FAMILIES,
    ModelSpec,
    build_model,
    conv_weight_count,
    parse_model_name,
)
from deepdraw.nn.search import GRIDS, sample_architectures
from deepdraw.nn.targets import layer_centres, original_frames, output_centres, receptive_fields

pytestmark = pytest.mark.usefixtures("one_torch_thread")


S_NAME = "spatial_temporal_4_8-16-16-32_32-32-64-64_7293"
ST_NAME = "spatiotemporal_4_8-8-32-64_7272"
LSTM_NAME = "lstm_3_8-16-16_256"

TABLE3 = {
    S_NAME: {
        "spatial0": (13, 320, 8),
        "spatial1": (7, 320, 16),
        "spatial2": (4, 320, 16),
        "spatial3": (2, 320, 32),
        "temporal0": (2, 107, 32),
        "temporal1": (2, 36, 32),
        "temporal2": (2, 12, 64),
        "temporal3": (2, 4, 64),
    },
    ST_NAME: {
        "spatiotemporal0": (13, 160, 8),
        "spatiotemporal1": (7, 80, 8),
        "spatiotemporal2": (4, 40, 32),
        "spatiotemporal3": (2, 20, 64),
    },
    LSTM_NAME: {
        "spatial0": (25, 320, 8),
        "spatial1": (25, 320, 16),
        "spatial2": (25, 320, 16),
        "recurrent_out": (1, 320, 256),
    },
}


# ------------------------------------------------------------------------------------ Table 3
@pytest.mark.parametrize("name", [S_NAME, ST_NAME, LSTM_NAME])
def test_layer_shapes_match_table3(name):
    model = build_model(name, "art", seed=0).eval()
    assert dict(model.layer_shapes()) == TABLE3[name]
    with torch.no_grad():
        out, layers = model(torch.randn(1, 25, 320, 2), return_layers=True)
    assert list(layers) == list(TABLE3[name])
    for key, t in layers.items():
        shape = tuple(t.shape[1:]) if t.dim() == 4 else (1, *t.shape[1:])
        assert shape == TABLE3[name][key], key
    assert out.shape == (1, 20)


def test_flatten_sizes_and_weight_counts():
    s, st = build_model(S_NAME), build_model(ST_NAME)
    assert s.flat_features == 512 and s.readout.in_features == 512
    assert st.flat_features == 2560
    # conv kernel weights as the paper counts them, with the 2-channel input
    assert conv_weight_count(s) == 80_112
    assert conv_weight_count(st) == 116_816
    # the preprint-era 1-channel input gives the old count
    assert conv_weight_count(build_model(ST_NAME, input_shape=(25, 320, 1))) == 116_424


def test_lstm_parameters_match_cudnn_layout():
    m = build_model(LSTM_NAME)
    assert m.lstm_input_size == 400
    lstm_params = sum(p.numel() for p in m.lstm.parameters())
    assert lstm_params == 673_792 == 4 * 256 * (400 + 256) + 2 * 4 * 256
    assert tuple(m.readout.weight.shape) == (20, 256)


def test_heads():
    art = build_model(S_NAME, "art", seed=3)
    assert art.dropout.p == pytest.approx(0.3)
    assert torch.count_nonzero(art.readout.bias) == 0
    bound = math.sqrt(6 / (512 + 20))
    w = art.readout.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    tdt = build_model(S_NAME, "tdt", seed=3)
    assert tdt.dropout is None and tdt.readout.in_features == 2 * 64
    x = torch.randn(2, 25, 320, 2)
    assert build_model(S_NAME, "tdt").eval()(x).shape == (2, 4, 3)
    assert build_model(S_NAME, "tdt_pv").eval()(x).shape == (2, 4, 6)
    assert build_model("lstm_1_4_8", "tdt_pv").eval()(x).shape == (2, 320, 6)
    assert build_model("lstm_1_4_8", "art").eval()(x).shape == (2, 20)
    # regression readout acts per frame on the [B, T', H'*C] transpose
    tdt.eval()
    with torch.no_grad():
        out, layers = tdt(x, return_layers=True)
        last = layers["temporal3"]  # [B, H, T, C]
        manual = tdt.readout(last.permute(0, 2, 1, 3).reshape(2, 4, -1))
    torch.testing.assert_close(out, manual)


def test_glorot_init_and_seeds():
    a, b, c = (build_model(S_NAME, seed=s) for s in (1, 1, 2))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.blocks["spatial0"].conv.weight, c.blocks["spatial0"].conv.weight)
    w = a.blocks["temporal3"].conv.weight  # [64, 64, 1, 9]
    bound = math.sqrt(6 / (64 * 9 + 64 * 9))
    assert w.abs().max() <= bound and w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.equal(a.blocks["spatial0"].norm.weight, torch.ones(8))


# -------------------------------------------------------------------------------- SAME padding
def test_same_padding_hand_computed():
    # in 10, k 4, s 3: out = 4, total = 3*3 + 4 - 10 = 3 -> (1, 2): the odd pixel goes at the end
    assert same_padding(10, 4, 3) == (1, 2)
    assert same_padding(320, 9, 3) == (3, 4)  # out 107, total 7
    assert same_padding(25, 7, 2) == (3, 3)  # out 13, total 6
    assert same_padding(5, 1, 3) == (0, 0)
    assert same_padding(4, 2, 4) == (0, 0)  # total would be negative -> 0


def _numpy_same_conv(x, w, stride):
    """Explicit TF 'SAME' cross-correlation: x (C, H, W), w (O, C, kh, kw)."""
    c, h, wd = x.shape
    o, _, kh, kw = w.shape
    sh, sw = stride
    oh, ow = -(-h // sh), -(-wd // sw)
    th, tw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - wd, 0)
    top, left = th // 2, tw // 2
    out = np.zeros((o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for di in range(kh):
                for dj in range(kw):
                    r, q = i * sh - top + di, j * sw - left + dj
                    if 0 <= r < h and 0 <= q < wd:
                        out[:, i, j] += w[:, :, di, dj] @ x[:, r, q]
    return out


@pytest.mark.parametrize(
    "kernel,stride,size", [((3, 4), (2, 3), (7, 10)), ((7, 1), (2, 1), (25, 6)), ((1, 9), (1, 3), (2, 20))]
)
def test_conv_same_matches_numpy(kernel, stride, size):
    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, kernel, stride).double()
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    got = conv(x)[0].detach().numpy()
    want = _numpy_same_conv(x[0].numpy(), conv.weight.detach().numpy(), stride)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------- LayerNorm
def test_layernorm_statistics_over_rows_frames_channels():
    torch.manual_seed(0)
    ln = LayerNormHWC(4).double()
    x = (
        torch.randn(3, 4, 5, 6, dtype=torch.float64)
        * torch.tensor([1.0, 5.0, 0.1, 2.0]).view(1, 4, 1, 1).double()
        + 7
    )
    y = ln(x)
    # per sample: mean 0, (biased) variance 1 over all of (C, H, W); per channel they are not normalised
    np.testing.assert_allclose(y.mean(dim=(1, 2, 3)).detach(), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(dim=(1, 2, 3), unbiased=False).detach(), 1, atol=1e-9)
    assert y[:, 1].std() > 2 * y[:, 2].std()
    # per-channel scale and shift, against a numpy NHWC reference (TF: begin_norm_axis=1, params on C)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        ln.bias.copy_(torch.tensor([0.0, 1.0, -2.0, 3.0]))
    xn = x.permute(0, 2, 3, 1).numpy()
    mean = xn.mean(axis=(1, 2, 3), keepdims=True)
    var = xn.var(axis=(1, 2, 3), keepdims=True)
    ref = (xn - mean) / np.sqrt(var + 1e-12) * ln.weight.detach().numpy() + ln.bias.detach().numpy()
    np.testing.assert_allclose(ln(x).permute(0, 2, 3, 1).detach().numpy(), ref, rtol=1e-10, atol=1e-10)
    assert ln.eps == 1e-12 and tuple(ln.weight.shape) == (4,)


# ---------------------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    "name",
    [
        S_NAME,
        ST_NAME,
        LSTM_NAME,
        S_NAME + "_3",
        S_NAME + "_3r",
        S_NAME + "r",
        "spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_1",
        "temporal_spatial_2_8-16_32-64_3592_5",
        "spatiotemporal_r_4_8-8-32-64_7272_2r",
        "lstm_3_8-16-16_256_4r",
        "lstm_2_8-16_128_k3s2",
        "lstm_r_2_8-16_128_k9s1_7",
    ],
)
def test_name_round_trip(name):
    spec = parse_model_name(name)
    assert spec.name == name
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_parsed_fields():
    s = parse_model_name(S_NAME + "_2r")
    assert (s.family, s.n_layers, s.s_kernels, s.t_kernels) == (
        "spatial_temporal",
        4,
        (8, 16, 16, 32),
        (32, 32, 64, 64),
    )
    assert (s.s_kernel_size, s.s_stride, s.t_kernel_size, s.t_stride, s.seed, s.untrained) == (
        7,
        2,
        9,
        3,
        2,
        True,
    )
    ts = parse_model_name("temporal_spatial_2_8-16_32-64_3592")
    assert ts.t_kernels == (8, 16) and ts.s_kernels == (32, 64)
    st = ModelSpec("spatiotemporal", 2, (8, 16), s_kernel_size=5, s_stride=2)
    assert st.name == "spatiotemporal_2_8-16_5252" and st.t_kernels == (8, 16)
    lstm = parse_model_name(LSTM_NAME)
    assert (lstm.s_kernels, lstm.n_units, lstm.s_kernel_size, lstm.s_stride, lstm.seed) == (
        (8, 16, 16),
        256,
        5,
        1,
        None,
    )
    assert parse_model_name(S_NAME + "_4r").architecture == parse_model_name(S_NAME)
    assert ModelSpec("lstm", 3, (8, 16, 16), n_units=256).name == LSTM_NAME  # sK 5, sS 1 by default
    with pytest.raises(DeepDrawError, match="s_kernel_size and t_kernel_size must be given"):
        ModelSpec("spatial_temporal", 1, (8,), (8,))
    assert set(FAMILIES) == {"spatial_temporal", "temporal_spatial", "spatiotemporal", "lstm"}


def test_bad_names():
    with pytest.raises(DeepDrawError, match="did you mean 'spatial_temporal'"):
        parse_model_name("spatial_temporl_4_8-16-16-32_32-32-64-64_7293")
    with pytest.raises(DeepDrawError, match="did you mean 'lstm'"):
        build_model("lsmt_3_8-16-16_256")
    with pytest.raises(DeepDrawError, match="malformed|fields"):
        parse_model_name("spatial_temporal_4_8-16-16-32_7293")
    with pytest.raises(DeepDrawError, match="n_layers"):
        parse_model_name("spatial_temporal_3_8-16-16-32_32-32-64-64_7293")
    with pytest.raises(DeepDrawError, match="Unknown task 'atr'; did you mean 'art'"):
        build_model(S_NAME, "atr")
    with pytest.raises(DeepDrawError, match=r"expected \[batch, 25, 320, 2\]"):
        build_model(S_NAME)(torch.zeros(2, 25, 320))


def test_package_names_are_the_submodules_objects():
    """deepdraw.nn.models is a package: every public name it offers is its home module's object, and
    importing it registers the paper's four families, each built by its network class."""
    import deepdraw.nn.models as models
    from deepdraw.nn.models import build, families, name_fields, networks, spec, tasks

    homes = {name: m for m in (tasks, families, spec, name_fields, networks, build) for name in m.__all__}
    assert set(models.__all__) <= set(homes), set(models.__all__) - set(homes)
    for name in models.__all__:
        assert getattr(models, name) is getattr(homes[name], name), name
    assert models.LSTM_DEFAULT_SPATIAL is name_fields.LSTM_DEFAULT_SPATIAL  # public, outside __all__
    assert families.FAMILIES is models.FAMILIES
    built = {name: fam.build for name, fam in families.FAMILIES.items()}
    assert built == {
        "spatial_temporal": networks.ConvNet,
        "temporal_spatial": networks.ConvNet,
        "spatiotemporal": networks.ConvNet,
        "lstm": networks.RecurrentNet,
    }


# ---------------------------------------------------------------------------------------- centres
def test_centres_s7293():
    m = build_model(S_NAME, "tdt")
    c = layer_centres(m)
    np.testing.assert_array_equal(c["spatial3"], np.arange(320))
    np.testing.assert_array_equal(c["temporal0"], 3 * np.arange(107) + 1)
    np.testing.assert_array_equal(output_centres(m), [40, 121, 202, 283])
    np.testing.assert_array_equal(original_frames(4), [0, 106, 212, 318])  # the original's misaligned frames
    np.testing.assert_array_equal(original_frames(320), np.arange(320))
    st = layer_centres(build_model(ST_NAME))
    assert len(st["spatiotemporal3"]) == 20


def test_centres_match_gradient_receptive_fields():
    """Interior receptive-field midpoints from autograd through plain 'SAME' convs equal the centres."""
    ops = [(9, 3), (5, 2), (7, 3)]
    convs = [Conv2dSame(1, 1, (1, k), (1, s)) for k, s in ops]
    for c in convs:
        torch.nn.init.constant_(c.weight, 1.0)
    x = torch.ones(1, 1, 1, 200, requires_grad=True)
    h = x
    for c in convs:
        h = c(h)
    fields = receptive_fields(ops, 200)
    centres, size = fields[-1]
    for o in range(1, h.shape[-1] - 1):
        (g,) = torch.autograd.grad(h[0, 0, 0, o], x, retain_graph=True)
        support = torch.nonzero(g[0, 0, 0]).ravel()
        lo, hi = int(support.min()), int(support.max())
        if lo > 0 and hi < 199:
            assert (lo + hi) / 2 == centres[o]
            assert hi - lo + 1 == size


# ------------------------------------------------------------------------------------------ search
def test_search_grid_sampling():
    a = sample_architectures("spatial_temporal", 20, seed=7)
    assert [s.name for s in a] == [s.name for s in sample_architectures("spatial_temporal", 20, seed=7)]
    assert [s.name for s in a] != [s.name for s in sample_architectures("spatial_temporal", 20, seed=8)]
    assert len({s.name for s in a}) == 20
    for s in a:
        assert 1 <= s.n_layers <= 4
        ch = list(s.s_kernels) + list(s.t_kernels)
        assert ch == sorted(ch) and set(ch) <= {8, 16, 32, 64}
        assert s.s_kernel_size <= s.t_kernel_size and {s.s_kernel_size, s.t_kernel_size} <= {3, 5, 7, 9}
        assert s.s_stride in (1, 2) and s.t_stride in (1, 2, 3)
    for s in sample_architectures("temporal_spatial", 10, seed=1):
        assert list(s.t_kernels) + list(s.s_kernels) == sorted(list(s.t_kernels) + list(s.s_kernels))
    for s in sample_architectures("spatiotemporal", 10, seed=1):
        assert s.t_kernel_size == s.s_kernel_size and s.t_stride == s.s_stride in (1, 2)
        assert list(s.s_kernels) == sorted(s.s_kernels)
    for s in sample_architectures("lstm", 10, seed=1):
        assert s.n_units in GRIDS["paper"].lstm_units and 1 <= s.n_layers <= 4
        assert parse_model_name(s.name) == s
    with pytest.raises(DeepDrawError, match="did you mean"):
        sample_architectures("spatiotemporl", 1)
