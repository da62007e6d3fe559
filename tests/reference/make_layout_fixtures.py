#!/usr/bin/env python3
"""Generate the fixture of the layout helpers (from_nchw / to_nchw / from_nhwc / from_nd ...), read by
tests/core/tensor_layout_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_layout_fixtures.py           # (re)write fixtures/layout.txt
    /usr/bin/python3 tests/reference/make_layout_fixtures.py --check   # exit 1 if the file differs

layout.txt (make_fixtures.py's format) holds torch's own memory order, flat, as one column each:
  - x_shape (N, C, H, W) = (2, 3, 4, 5); x_nchw = x.flatten() (torch's default, contiguous NCHW);
    x_nhwc = x.permute(0, 2, 3, 1).flatten() (channels-last, as NumPy/TensorFlow images);
  - param.weight / param.bias: nn.Conv2d(3, 4, 3, padding=1), weight as resblocks stores it
    (4 x 27, torch's element order); y_shape and y_nchw = conv(x).flatten(), so that a wrong pixel
    order anywhere shows in the convolution's output;
  - t_shape (n, d) = (3, 5), t_nd = t.flatten() (a dense batch, row-major (n, d)).
The C++ test maps these buffers with the helpers and compares against resblocks' layout, which it
builds element by element from the documented column index w + W*(h + H*n).
"""

import sys

import torch
from torch import nn

import make_fixtures
from make_fixtures import DTYPE, parameter, quantise


def flat(t):
    return t.contiguous().reshape(-1, 1)


def layout():
    case = make_fixtures.Case("layout", "torch's memory order of an NCHW batch, its NHWC permutation, a 3x3 "
                              "convolution's NCHW output, and a dense (n, d) batch, each flat as one column.",
                              generator="make_layout_fixtures.py", layout="flat torch memory order")
    torch.manual_seed(5001)
    x = quantise(torch.randn(2, 3, 4, 5, dtype=DTYPE))
    conv = nn.Conv2d(3, 4, 3, padding=1).to(DTYPE)
    with torch.no_grad():
        conv.weight.copy_(quantise(conv.weight))
        conv.bias.copy_(quantise(conv.bias))
        y = conv(x)
    t = quantise(torch.randn(3, 5, dtype=DTYPE))
    case.add("x_shape", torch.tensor(list(x.shape), dtype=DTYPE).reshape(-1, 1))
    case.add("x_nchw", flat(x))
    case.add("x_nhwc", flat(x.permute(0, 2, 3, 1)))
    case.add("param.weight", parameter(conv.weight))
    case.add("param.bias", parameter(conv.bias))
    case.add("y_shape", torch.tensor(list(y.shape), dtype=DTYPE).reshape(-1, 1))
    case.add("y_nchw", flat(y))
    case.add("t_shape", torch.tensor(list(t.shape), dtype=DTYPE).reshape(-1, 1))
    case.add("t_nd", flat(t))
    return [case]


if __name__ == "__main__":
    sys.exit(make_fixtures.main(layout, __doc__))
