#!/usr/bin/env python3
"""Generate the DenseNet PyTorch parity fixtures read by tests/blocks/dense_block_test.cpp and
tests/blocks/transition_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_dense_fixtures.py           # (re)write the dense_*.txt fixtures
    /usr/bin/python3 tests/reference/make_dense_fixtures.py --check   # exit 1 if the files on disk differ

torchvision is not needed (nor used when installed): its `_DenseLayer`, `_DenseBlock` and
`_Transition` are written out below with the same module names, so the parameter and buffer names
are torchvision's (`denselayer1.norm1.weight`, `norm.running_var`, `conv.weight`).

Everything is float64 with fixed seeds, so regenerating gives byte-identical files. The format and
the tensors per case are those of make_resnet_fixtures.py (whose helpers this script imports):
`x_shape` (N, C, H, W) as 4 x 1, `x`, `dL_dy`, `y`, `dL_dx`, `y_eval` in the image layout
(channels x N*H*W, column w + W*(h + H*n)); `param.<name>` (conv weights Out x In*k*k), `buffer.<name>`
(non-default BatchNorm running statistics, num_batches_tracked 3), and after one training step
y = block(x), y.backward(dL_dy): `grad.<name>` and `after.<name>` (the updated buffers); `y_eval` is the
eval-mode output with the updated statistics. Inputs are multiples of 1/64 (exact in float32) and
every ReLU input is at least 1e-4 away from 0, in train and eval mode.
"""

import sys

import torch
from torch import nn

import make_fixtures
from make_fixtures import DTYPE, quantise
from make_resnet_fixtures import ProbedReLU, randomise, step_case


def Case(name, description):
    return make_fixtures.Case(name, description, generator="make_dense_fixtures.py", layout="resblocks' layout")


# --- torchvision's DenseNet modules (torchvision/models/densenet.py), without the checkpointing ---


class DenseLayer(nn.Module):
    """_DenseLayer: conv2(relu2(norm2(conv1(relu1(norm1(cat(inputs))))))), the bottleneck bn_size*k wide."""

    def __init__(self, cin, growth_rate, bn_size, probes):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = ProbedReLU(probes)
        self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = ProbedReLU(probes)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, inputs):
        concated = torch.cat(inputs, 1)
        bottleneck = self.conv1(self.relu1(self.norm1(concated)))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class DenseBlock(nn.ModuleDict):
    """_DenseBlock: layer i sees [x, f1, ..., f_{i-1}]; the output is [x, f1, ..., fL]."""

    def __init__(self, num_layers, cin, bn_size, growth_rate, probes):
        super().__init__()
        for i in range(num_layers):
            self.add_module("denselayer%d" % (i + 1), DenseLayer(cin + i * growth_rate, growth_rate, bn_size, probes))

    def forward(self, init_features):
        features = [init_features]
        for _, layer in self.items():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """_Transition: pool(conv(relu(norm(x)))), conv 1x1 without bias, AvgPool2d(2, stride 2)."""

    def __init__(self, cin, cout, probes):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", ProbedReLU(probes))
        self.add_module("conv", nn.Conv2d(cin, cout, kernel_size=1, stride=1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


# --- cases ----------------------------------------------------------------------------------------

# A dense block has thousands of ReLU inputs (every layer renormalises all earlier channels), so the
# margin is 1e-4 rather than make_resnet_fixtures.py's 1e-3: still 100 times float32's rounding of
# these O(1) values.
KINK_MARGIN = 1e-4


def run_case(name, description, make, shape, seed):
    """One training step and one eval-mode pass of `make(probes)` on an N, C, H, W = `shape` input."""
    torch.manual_seed(seed)
    probes = []
    block = randomise(make(probes).to(DTYPE))
    x = quantise(torch.randn(*shape, dtype=DTYPE))
    return step_case(Case(name, description), block, x, probes, KINK_MARGIN)


def all_cases():
    return [
        run_case(
            "dense_block",
            "_DenseBlock(num_layers=3, in=4, bn_size=4, growth_rate=3); x is N=2, C=4, 5x6, y (4 + 3*3) x (2*5*6).",
            lambda probes: DenseBlock(3, 4, 4, 3, probes), (2, 4, 5, 6), 3004),
        run_case(
            "dense_transition",
            "_Transition(in=6, out=3): BN-ReLU-conv1x1-AvgPool2d(2, 2); x is N=2, C=6, 5x6, y 3 x (2*2*3).",
            lambda probes: Transition(6, 3, probes), (2, 6, 5, 6), 3101),
    ]


if __name__ == "__main__":
    sys.exit(make_fixtures.main(all_cases, __doc__))
