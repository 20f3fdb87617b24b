"""scripts/rexnet_rank_study.py: the rank ratio on matrices of known rank, the layers' rank in
the linear and nonlinear case, and a tiny run of the CLI end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "rexnet_rank_study.py"


rs = load_script("rexnet_rank_study")


def test_rank_of_a_product_is_its_inner_dimension():
    g = torch.Generator().manual_seed(0)
    for d, k, n in [(40, 7, 300), (64, 1, 100), (30, 30, 90)]:
        m = torch.randn(d, k, generator=g) @ torch.randn(k, n, generator=g)
        assert rs.rank_ratio(m) == pytest.approx(k / d)
        assert rs.rank_ratio(m, d_out=2 * d) == pytest.approx(k / (2 * d))
    # float32 rounding must not count as rank (it would with float64's eps on float32 data)
    m = torch.randn(50, 5, generator=g) @ torch.randn(5, 400, generator=g)
    assert m.dtype == torch.float32 and rs.rank_ratio(m) == pytest.approx(0.1)
    assert rs.rank_ratio(m, rtol=400 * torch.finfo(torch.float64).eps) > 0.5


def test_repeated_and_zero_rows():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 60, generator=g)
    m = torch.cat([a[[0, 1, 2, 3, 0, 1, 3]], 2.5 * a[[2]], torch.zeros(2, 60)])   # 10 rows
    assert rs.rank_ratio(m) == pytest.approx(0.4)
    assert rs.rank_ratio(torch.zeros(5, 20)) == 0.0
    assert rs.rank_ratio(torch.eye(6)[:, :3]) == pytest.approx(0.5)  # rank is bounded by N too


def test_bchw_features_have_channels_as_rows():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(2, 3, 5, 5, generator=g)
    # 8 channels: 3 independent ones, their sum, copies and a zero channel -> rank 3 of 8
    x = torch.cat([base, base.sum(1, keepdim=True), base[:, :2], base[:, :1] * 3,
                   torch.zeros(2, 1, 5, 5)], dim=1)
    assert rs.rank_ratio(x) == pytest.approx(3 / 8)
    assert rs._matrix(x).shape == (8, 50)
    assert torch.equal(rs._matrix(x)[3], x[:, 3].reshape(-1))   # row i is channel i
    # a wrong reshape (batch-major) would see each (3 x 25) sample as one row
    assert rs.rank_ratio(x.reshape(2, -1)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rs.rank_ratio(torch.zeros(2, 3, 4))


def test_several_tolerances_from_one_svd():
    m = torch.diag(torch.tensor([1.0, 0.5, 0.05, 0.005, 0.0], dtype=torch.float64))
    assert rs.rank_ratios(m, 5, (None, 1e-3, 1e-2, 1e-1)) == pytest.approx([0.8, 0.8, 0.6, 0.4])


def _ratio(kind, d_in, d_out, act, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rs.BATCH, d_in, rs.HW, rs.HW, generator=g)
    with torch.no_grad():
        y = rs.layer(kind, d_in, d_out, act, g)(x)
    assert y.shape == (rs.BATCH, d_out, rs.HW, rs.HW)
    return rs.rank_ratio(y, d_out)


def test_linear_1x1_keeps_the_input_rank():
    for d_in, d_out in [(5, 50), (20, 80), (64, 64)]:
        assert _ratio("conv1x1", d_in, d_out, "none") == pytest.approx(d_in / d_out)


def test_nonlinearity_expands_rank_of_a_1x1():
    for act in ("relu", "silu", "elu", "leakyrelu"):
        assert _ratio("conv1x1", 6, 60, act) > 0.5   # linear: 0.1
    assert _ratio("conv3x3", 4, 60, "none") == pytest.approx(36 / 60)   # 9 shifted inputs


def test_bottleneck_hidden_width_is_d_out():
    # the first 1x1's expansion ratio is d_out / d_in, the reciprocal of the x-axis ratio
    for kind, groups in [("ib_conv", 1), ("ib_dw", 20)]:
        convs = [m for m in rs.layer(kind, 5, 20, "relu", torch.Generator().manual_seed(0)).body
                 if isinstance(m, torch.nn.Conv2d)]
        assert [tuple(c.weight.shape) for c in convs] == [
            (20, 5, 1, 1), (20, 20 // groups, 3, 3), (20, 20, 1, 1)]
        assert [c.groups for c in convs] == [1, groups, 1]


def test_linear_bottleneck_rank_is_nine_shifts_plus_the_shortcut_mean():
    # f = identity: rows lie in the span of the 9 (zero-padded) shifts of the centred input,
    # plus the shortcut's per-channel means (one more direction); generic weights reach it
    for kind in ("ib_conv", "ib_dw"):
        for d_in, d_out in [(1, 32), (4, 64), (3, 32), (8, 64)]:
            assert _ratio(kind, d_in, d_out, "none") == pytest.approx(
                min(d_out, 9 * d_in + 1) / d_out), (kind, d_in, d_out)


def test_nonlinear_bottleneck_exceeds_the_linear_bound():
    # with hidden = 6 d_in it could not exceed 7 d_in / d_out = 0.44 here
    for kind in ("ib_conv", "ib_dw"):
        for act in ("relu", "silu"):
            assert _ratio(kind, 4, 64, act) > (9 * 4 + 1) / 64


def test_partial_shortcut_adds_the_input_to_the_first_channels():
    block = rs.layer("ib_dw", 3, 10, "relu", torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        body, out = block.body(x), block(x)
    assert torch.allclose(out[:, :3], body[:, :3] + x)
    assert torch.equal(out[:, 3:], body[:, 3:])
    with pytest.raises(ValueError):
        rs.layer("conv5x5", 3, 10, "relu", torch.Generator())


def test_verdicts():
    base = {"relu": 0.3, "relu6": 0.2, "leakyrelu": 0.5, "elu": 0.8, "softplus": 0.6,
            "hardswish": 0.55, "silu": 0.9}
    assert rs.verdict(base) == "yes"
    assert rs.verdict({**base, "softplus": 0.85}) == "partly"   # splits SiLU and ELU
    assert rs.verdict({**base, "softplus": 0.8}) == "partly"    # ties ELU: not above it
    assert rs.verdict({**base, "leakyrelu": 0.25}) == "partly"  # below ReLU
    assert rs.verdict({**base, "relu": 0.8}) == "no"            # ties ELU
    assert rs.verdict({**base, "relu6": 0.85}) == "no"          # above ELU
    assert rs.verdict({**base, "elu": 0.1}) == "no"
    assert rs.verdict(dict.fromkeys(base, 1.0)) == "no"         # all at full rank
    assert rs.verdict({"relu": 0.1, "relu6": 0.1, "elu": 0.5, "silu": 0.6}) == "yes"
    with pytest.raises(ValueError):
        rs.verdict({"relu": 0.1, "silu": 0.5})


def test_orderings_and_the_paper_check():
    ratios = (0.1, 0.5)
    score = {"none": 0.1, "relu": 0.3, "relu6": 0.2, "leakyrelu": 0.5, "elu": 0.8,
             "softplus": 0.6, "hardswish": 0.55, "silu": 0.9}
    res = {"k": {a: {"0.1": {"mean": v}, "0.5": {"mean": 1.0}} for a, v in score.items()}}
    o = rs.orderings(res, ratios)["k"]
    assert o["order"] == ["silu", "elu", "softplus", "hardswish", "leakyrelu", "relu", "relu6"]
    assert o["paper_ordering"] == "yes" and o["ratios"] == ["0.1"]
    res["k"]["softplus"]["0.1"]["mean"] = 0.8    # ties ELU: not strictly above every other one
    o = rs.orderings(res, ratios)["k"]
    assert o["paper_ordering"] == "partly" and "elu = softplus" in o["shown"]
    res["k"]["relu"]["0.1"]["mean"] = 0.85       # ReLU above ELU
    assert rs.orderings(res, ratios)["k"]["paper_ordering"] == "no"


def test_study_is_reproducible_from_the_seed():
    kw = dict(kinds=("conv1x1",), acts=("none", "relu"), ratios=(0.2,))
    a, b = rs.study(2, seed=3, **kw), rs.study(2, seed=3, **kw)
    assert a == b and len(a["d_out"]) == 2 and all(32 <= d <= 128 for d in a["d_out"])
    lin = a["results"]["default"]["conv1x1"]["none"]["0.2"]
    expect = [max(1, round(0.2 * d)) / d for d in a["d_out"]]
    assert lin["mean"] == pytest.approx(sum(expect) / 2)
    assert rs.study(2, seed=4, **kw)["d_out"] != a["d_out"]


def test_cli_writes_json_and_png(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--networks", "2", "--ratios", "0.1",
                           "0.5", "--also-rtol", "0.01", "--out", str(tmp_path / "o")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "o" / "rank_study.json").read_text())
    assert data["settings"]["networks"] == 2 and data["settings"]["ratios"] == [0.1, 0.5]
    assert set(data["results"]) == {"default", "0.01"}
    assert set(data["results"]["default"]) == set(rs.KINDS)
    assert set(data["results"]["default"]["conv3x3"]) == set(rs.ACTS)
    assert set(data["orderings"]) == {"default", "0.01"}
    assert data["orderings"]["0.01"]["ib_dw"]["paper_ordering"] in ("yes", "partly", "no")
    png = (tmp_path / "o" / "rank_study.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # one row per tolerance (2), one column per layer kind (4): 4.2 x 3.4 inches each at 120 dpi
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (round(4 * 4.2 * 120), round(2 * 3.4 * 120))
    assert proc.stdout.count("paper's ordering holds: ") == 2 * len(rs.KINDS)
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]


def test_centering_removes_the_mean_direction():
    g = torch.Generator().manual_seed(1)
    low = torch.randn(10, 3, generator=g, dtype=torch.float64) @ \
        torch.randn(3, 200, generator=g, dtype=torch.float64)
    shifted = low + 50.0 * torch.rand(10, 1, generator=g, dtype=torch.float64)
    assert rs.rank_ratio(shifted) == pytest.approx(0.4)             # rank 3 + the mean
    assert rs.rank_ratio(shifted, center=True) == pytest.approx(0.3)
    # relative to sigma_max, the large mean hides the rank-3 part at tolerance 0.1
    assert rs.rank_ratio(shifted, rtol=0.1) < rs.rank_ratio(shifted, rtol=0.1, center=True)
