#!/usr/bin/env python3
"""Generate the LayerNorm and Highway PyTorch parity fixtures read by
tests/reference/layer_norm_highway_parity_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_highway_fixtures.py           # (re)write the fixtures below
    /usr/bin/python3 tests/reference/make_highway_fixtures.py --check   # exit 1 if the files on disk differ

Everything is float64 with fixed seeds, so regenerating gives byte-identical files. The format and
the helpers are make_fixtures.py's (x, `param.<name>`, dL_dy, y, dL_dx, `grad.<name>`; batches are
features x samples, i.e. PyTorch's (n, d) tensor transposed):

  - layer_norm:        nn.LayerNorm(6), weight and bias not the defaults; x is 6 features x 7 samples.
  - layer_norm_offset: nn.LayerNorm(24) on columns with means between 20 and 60 and spreads from 0.25
                       to 4 (x is 24 x 5): a one-pass E[x^2] - E[x]^2 variance would lose digits here.
  - highway:           the Highway module of the PyTorch anchor (shared/anchors/blocks_torch.py),
                       y = t * relu(h(x)) + (1 - t) * x, t = sigmoid(t(x)), h and t nn.Linear(8, 8), the
                       gate bias initialised to -2 as there; x is 8 x 6. Names h.weight, h.bias,
                       t.weight, t.bias.

Inputs, parameters and dL_dy are rounded to multiples of 1/64 (exact in float32 too); every ReLU input
is checked to be at least 1e-3 away from 0, so the float tests are not decided at the kink.
"""

import sys

import torch
from torch import nn
import torch.nn.functional as F

import make_fixtures
from make_fixtures import DTYPE, check_preactivations_away_from_zero, quantise, quantised_parameters, run_case


def Case(name, description):
    return make_fixtures.Case(name, description, generator="make_highway_fixtures.py")


class Highway(nn.Module):
    """The anchor's Highway module (blocks_torch.py), verbatim but for the dtype argument."""

    def __init__(s, d):
        super().__init__(); s.h = nn.Linear(d, d); s.t = nn.Linear(d, d); nn.init.constant_(s.t.bias, -2.0)

    def forward(s, x):
        t = torch.sigmoid(s.t(x)); return t * F.relu(s.h(x)) + (1 - t) * x


def layer_norm():
    torch.manual_seed(2001)
    model = nn.LayerNorm(6).to(DTYPE)
    with torch.no_grad():  # not the defaults (ones, zeros), so the affine part is tested
        model.weight.copy_(1.0 + 0.5 * torch.randn(6, dtype=DTYPE))
        model.bias.copy_(0.5 * torch.randn(6, dtype=DTYPE))
    quantised_parameters(model)
    x = quantise(torch.randn(7, 6, dtype=DTYPE))  # 7 samples, 6 features
    dL_dy = quantise(torch.randn(7, 6, dtype=DTYPE))
    case = Case("layer_norm", "y = LayerNorm(6)(x), eps 1e-5, non-default weight and bias; x is 6 features x 7 samples.")
    return run_case(case, model, x, dL_dy)


def layer_norm_offset():
    torch.manual_seed(2002)
    model = nn.LayerNorm(24).to(DTYPE)
    with torch.no_grad():
        model.weight.copy_(1.0 + 0.5 * torch.randn(24, dtype=DTYPE))
        model.bias.copy_(0.5 * torch.randn(24, dtype=DTYPE))
    quantised_parameters(model)
    means = torch.tensor([20.0, -35.0, 60.0, 45.5, -52.25], dtype=DTYPE).reshape(5, 1)
    spreads = torch.tensor([0.25, 1.0, 4.0, 0.5, 2.0], dtype=DTYPE).reshape(5, 1)
    x = quantise(means + spreads * torch.randn(5, 24, dtype=DTYPE))
    dL_dy = quantise(torch.randn(5, 24, dtype=DTYPE))
    case = Case("layer_norm_offset",
                "y = LayerNorm(24)(x) on columns with large means (20 to 60) and spreads 0.25 to 4; x is 24 x 5.")
    return run_case(case, model, x, dL_dy)


def highway():
    torch.manual_seed(2003)
    model = Highway(8).to(DTYPE)
    quantised_parameters(model)
    assert bool((model.t.bias == -2.0).all())
    x = quantise(torch.randn(6, 8, dtype=DTYPE))  # 6 samples, 8 features
    dL_dy = quantise(torch.randn(6, 8, dtype=DTYPE))
    with torch.no_grad():
        check_preactivations_away_from_zero(model.h(x), "highway")
    case = Case("highway",
                "y = t*relu(h(x)) + (1-t)*x, t = sigmoid(t(x)), h, t Linear(8,8), t.bias = -2 (the anchor's "
                "Highway); x is 8 x 6.")
    return run_case(case, model, x, dL_dy)


def all_cases():
    return [layer_norm(), layer_norm_offset(), highway()]


if __name__ == "__main__":
    sys.exit(make_fixtures.main(all_cases, __doc__))
