#!/usr/bin/env python3
"""Generate the ResNet-block PyTorch parity fixtures read by tests/reference/resnet_parity_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_resnet_fixtures.py           # (re)write the resnet_*.txt fixtures
    /usr/bin/python3 tests/reference/make_resnet_fixtures.py --check   # exit 1 if the files on disk differ

Everything is float64 with fixed seeds, so regenerating gives byte-identical files. The file format is
the one of make_fixtures.py (and tests/support/fixture.hpp):
  - lines starting with '#' are comments, blank lines are ignored;
  - each tensor is a header line `name rows cols` followed by `cols` lines of `rows` values each,
    i.e. column-major order of resblocks' layout; values printed with '%.17g'.

Per case (one block: BasicBlock, Bottleneck or PreActBlock, written here with torchvision's module
names, so the parameter and buffer names are torchvision's and resblocks'):
  - `x_shape` (N, C, H, W) as a 4 x 1 tensor; `x`, `dL_dy`, `y`, `dL_dx`, `y_eval` in the image layout:
    channels x (N*H*W), column w + W*(h + H*n) (the NCHW tensor permuted to (C, N, H, W), C rows);
  - `param.<name>`: conv weights Out x (In*k*k) (torch's weight.reshape(Out, -1)), BN weight/bias C x 1;
  - `buffer.<name>`: the BN buffers before the step (running_mean, running_var C x 1,
    num_batches_tracked 1 x 1); they are not the defaults, so that the update and eval mode are tested;
  - `y`, `dL_dx`, `grad.<name>`: one training-mode step, y = block(x), y.backward(dL_dy);
  - `after.<name>`: the buffers after that step (momentum 0.1, unbiased variance, count + 1);
  - `y_eval`: block.eval()(x) with the buffers after the step.

Inputs (x, parameters, initial buffers, dL_dy) are rounded to multiples of 1/64, so they are exact in
float32 too. Every ReLU input (train and eval mode) is checked to be at least 1e-3 away from 0, so the
float tests are not decided by a rounding at a kink.
"""

import sys

import torch
from torch import nn

import make_fixtures
from make_fixtures import DTYPE, image, quantise
from make_fixtures import parameter as tensor


def Case(name, description):
    return make_fixtures.Case(name, description, generator="make_resnet_fixtures.py", layout="resblocks' layout")


# --- the blocks, with torchvision's module names ----------------------------------------------------


class ProbedReLU(nn.Module):
    """ReLU that records its input (to check that no pre-activation sits at the kink)."""

    def __init__(self, probes):
        super().__init__()
        self.probes = probes

    def forward(self, x):
        self.probes.append(x.detach().clone())
        return torch.relu(x)


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock: relu(downsample(x) + bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, cin, channels, stride, probes):
        super().__init__()
        self.conv1 = conv3x3(cin, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = nn.Sequential(conv1x1(cin, channels, stride), nn.BatchNorm2d(channels))
        self.relu = ProbedReLU(probes)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride on the 3x3 conv2), expansion 4."""

    expansion = 4

    def __init__(self, cin, channels, stride, probes):
        super().__init__()
        out = channels * self.expansion
        self.conv1 = conv1x1(cin, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = nn.Sequential(conv1x1(cin, out, stride), nn.BatchNorm2d(out))
        self.relu = ProbedReLU(probes)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class PreActBlock(nn.Module):
    """ResNet v2 basic block: downsample(x) + conv2(relu(bn2(conv1(relu(bn1(x)))))), the shortcut a
    bare strided 1x1 conv on x itself, nothing after the add."""

    def __init__(self, cin, channels, stride, probes):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.downsample = nn.Sequential(conv1x1(cin, channels, stride))
        self.relu = ProbedReLU(probes)

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + self.downsample(x)


# --- cases ----------------------------------------------------------------------------------------


def randomise(block):
    """Quantised parameters; BN gamma in [0.5, 1.5], beta in [-0.5, 0.5]; non-default running stats
    (mean ~ N(0, 0.5^2), var in [0.5, 2]) and num_batches_tracked = 3."""
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(quantise(module.weight))
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(quantise(0.5 + torch.rand(c, dtype=DTYPE)))
                module.bias.copy_(quantise(torch.rand(c, dtype=DTYPE) - 0.5))
                module.running_mean.copy_(quantise(0.5 * torch.randn(c, dtype=DTYPE)))
                module.running_var.copy_(quantise(0.5 + 1.5 * torch.rand(c, dtype=DTYPE)))
                module.num_batches_tracked.fill_(3)
    return block


def check_away_from_kinks(probes, what, margin=1e-3):
    for h in probes:
        assert bool((h.abs() > margin).all()), "%s: a ReLU input is too close to 0 (%g); pick another seed" % (
            what, h.abs().min())


def step_case(case, block, x, probes, kink_margin=1e-3):
    """Fills `case` with x (N, C, H, W), the parameters and buffers, a random dL_dy, one training step
    (y, dL_dx, grad.*, after.* buffers) and the eval-mode y_eval; `probes` collects ReLU inputs."""
    with torch.no_grad():
        out_shape = block.eval()(x).shape  # eval mode: leaves the running statistics alone
    dL_dy = quantise(torch.randn(*out_shape, dtype=DTYPE))

    params = dict(block.named_parameters())
    buffers = {k: v.detach().clone() for k, v in block.named_buffers()}

    case.add("x_shape", torch.tensor(list(x.shape), dtype=DTYPE).reshape(-1, 1))
    case.add("x", image(x))
    for k, p in params.items():
        case.add("param." + k, tensor(p))
    for k, b in buffers.items():
        case.add("buffer." + k, tensor(b))
    case.add("dL_dy", image(dL_dy))

    block.train()
    probes.clear()
    xg = x.clone().requires_grad_(True)
    y = block(xg)
    check_away_from_kinks(probes, case.name + " (train)", kink_margin)
    y.backward(dL_dy)
    case.add("y", image(y))
    case.add("dL_dx", image(xg.grad))
    for k, p in params.items():
        case.add("grad." + k, tensor(p.grad))
    for k, b in block.named_buffers():
        case.add("after." + k, tensor(b))

    block.eval()
    probes.clear()
    with torch.no_grad():
        y_eval = block(x)
    check_away_from_kinks(probes, case.name + " (eval)", kink_margin)
    case.add("y_eval", image(y_eval))
    return case


def run_block_case(name, description, block_type, cin, channels, stride, shape, seed):
    torch.manual_seed(seed)
    probes = []
    block = randomise(block_type(cin, channels, stride, probes).to(DTYPE))
    n, h, w = shape
    x = quantise(torch.randn(n, cin, h, w, dtype=DTYPE))
    return step_case(Case(name, description), block, x, probes)


def all_cases():
    return [
        run_block_case(
            "resnet_basic_block_projection",
            "BasicBlock(in=4, channels=6, stride=2), projection skip (1x1 conv + BN); x is N=2, C=4, 7x5, y 6 x (2*4*3).",
            BasicBlock, 4, 6, 2, (2, 7, 5), 2002),
        run_block_case(
            "resnet_bottleneck",
            "Bottleneck(in=8, channels=3 -> 12 out, stride 2 on conv2), projection skip; x is N=2, C=8, 6x6, y 12 x (2*3*3).",
            Bottleneck, 8, 3, 2, (2, 6, 6), 2102),
        run_block_case(
            "resnet_preact_block",
            "PreActBlock(in=4, channels=6, stride=2), skip a bare 1x1 strided conv on x; x is N=2, C=4, 5x6, y 6 x (2*3*3).",
            PreActBlock, 4, 6, 2, (2, 5, 6), 2201),
    ]


if __name__ == "__main__":
    sys.exit(make_fixtures.main(all_cases, __doc__))
