#!/usr/bin/env python3
"""Generate the loss fixtures read by tests/train/cross_entropy_loss_test.cpp and mse_loss_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_loss_fixtures.py           # (re)write the loss_*.txt fixtures
    /usr/bin/python3 tests/reference/make_loss_fixtures.py --check   # exit 1 if the files on disk differ

Everything is float64 with fixed seeds, so regenerating gives byte-identical files. The file format is
the one of make_fixtures.py (and tests/support/fixture.hpp): a header line `name rows cols`, then cols
lines of rows values (column-major, resblocks' layout); values printed with '%.17g'.

Per cross-entropy case (torch.nn.functional.cross_entropy on logits of shape (n, classes)):
  - `logits`: classes x n (one column per sample), `labels`: 1 x n, `argmax`: 1 x n (torch.argmax,
    the first maximum on ties);
  - `loss.<variant>` (1 x 1) and `grad.<variant>` (dL/dlogits, classes x n) for the variants
    `mean`, `sum` (label_smoothing 0) and `smooth_mean`, `smooth_sum` (label_smoothing 0.1).
Per MSE case (torch.nn.functional.mse_loss): `y`, `target` (rows x n), `loss.mean`, `loss.sum`,
`grad.mean`, `grad.sum` (dL/dy).

Logits and targets are multiples of 1/64: exact in float32 too, so the float tests measure only the
arithmetic.
"""

import sys

import torch
import torch.nn.functional as F

import make_fixtures
from make_fixtures import DTYPE, batch, quantise

SMOOTHING = 0.1


def Case(name, description):
    return make_fixtures.Case(name, description, generator="make_loss_fixtures.py")


def row(values):
    return torch.tensor(values, dtype=DTYPE).reshape(1, -1)


def cross_entropy_case(name, description, logits, labels):
    """logits: torch (n, classes) float64; labels: list of n ints."""
    case = Case(name, description)
    target = torch.tensor(labels, dtype=torch.long)
    case.add("logits", batch(logits))
    case.add("labels", row(labels))
    case.add("argmax", row(torch.argmax(logits, dim=1).tolist()))
    for variant, smoothing, reduction in (("mean", 0.0, "mean"), ("sum", 0.0, "sum"),
                                          ("smooth_mean", SMOOTHING, "mean"), ("smooth_sum", SMOOTHING, "sum")):
        z = logits.clone().requires_grad_(True)
        loss = F.cross_entropy(z, target, label_smoothing=smoothing, reduction=reduction)
        loss.backward()
        assert bool(torch.isfinite(loss)) and bool(torch.isfinite(z.grad).all()), name
        case.add("loss." + variant, loss.detach().reshape(1, 1))
        case.add("grad." + variant, batch(z.grad))
    return case


def cross_entropy_small():
    torch.manual_seed(3001)
    n, classes = 7, 5
    logits = quantise(2.0 * torch.randn(n, classes, dtype=DTYPE))
    # Ties for the argmax: sample 2 has its maximum twice (torch.argmax takes the first), sample 5
    # is constant (argmax 0).
    logits[2, 1] = logits[2, 3] = logits[2].max() + 0.5
    logits[5, :] = 0.25
    labels = torch.randint(0, classes, (n,)).tolist()
    labels[2] = 1  # the tie counts as correct only for the first maximum
    labels[5] = 0
    return cross_entropy_case(
        "loss_cross_entropy",
        "F.cross_entropy on 5 classes x 7 samples (ties in samples 2 and 5); label_smoothing 0 and 0.1, mean and sum.",
        logits, labels)


def cross_entropy_large():
    torch.manual_seed(3002)
    n, classes = 6, 4
    logits = quantise(torch.randn(n, classes, dtype=DTYPE))
    logits[0] = torch.tensor([1000.0, -1000.0, 999.5, 0.0])   # label at the maximum
    logits[1] = torch.tensor([-1000.0, 1000.0, -999.0, 1000.0])  # label 2000 below the maximum, a tie
    logits[2] = torch.tensor([1000.0, 1000.0, 1000.0, 1000.0])   # all equal and huge
    logits[3] = torch.tensor([-1000.0, -1000.0, -1000.0, -998.0])  # all hugely negative
    logits[4] *= 500.0
    logits[5] = torch.tensor([0.0, -1000.0, 0.015625, -0.015625])
    labels = [0, 0, 3, 3, 1, 1]
    return cross_entropy_case(
        "loss_cross_entropy_large",
        "F.cross_entropy on 4 classes x 6 samples with logits up to +-1000 (no overflow); smoothing 0 and 0.1.",
        logits, labels)


def mse():
    torch.manual_seed(3003)
    y = quantise(torch.randn(6, 4, dtype=DTYPE))  # 6 samples, 4 features
    t = quantise(torch.randn(6, 4, dtype=DTYPE))
    case = Case("loss_mse", "F.mse_loss(y, target) on 4 features x 6 samples, mean and sum.")
    case.add("y", batch(y))
    case.add("target", batch(t))
    for reduction in ("mean", "sum"):
        z = y.clone().requires_grad_(True)
        loss = F.mse_loss(z, t, reduction=reduction)
        loss.backward()
        case.add("loss." + reduction, loss.detach().reshape(1, 1))
        case.add("grad." + reduction, batch(z.grad))
    return case


def all_cases():
    return [cross_entropy_small(), cross_entropy_large(), mse()]


if __name__ == "__main__":
    sys.exit(make_fixtures.main(all_cases, __doc__))
