#!/usr/bin/env python3
"""Generate the optimizer, lr-schedule and gradient-clipping fixtures read by tests/train/*_test.cpp.

Run from anywhere with a Python that has torch (on Debian: /usr/bin/python3, package python3-torch):

    /usr/bin/python3 tests/reference/make_optimizer_fixtures.py           # (re)write the optim_*.txt fixtures
    /usr/bin/python3 tests/reference/make_optimizer_fixtures.py --check   # exit 1 if the files on disk differ

Everything is float64 with fixed seeds, so regenerating gives byte-identical files. The file format is
the one of make_fixtures.py (and tests/support/fixture.hpp): '#' comments, then tensors as a header
`name rows cols` and `cols` lines of `rows` values ('%.17g'; non-finite values print as inf / nan).

The "model" has three float64 parameters: `fc.weight` (3 x 4), `fc.bias` (3) and `norm.weight` (4),
vectors stored as n x 1. Initial values and the five gradients are multiples of 1/64 (exact in float).

optim_<case>.txt, one optimizer run of 5 steps:
  - `option.<field>` (1 x 1): the resblocks option fields (SgdOptions / AdamOptions / AdamWOptions;
    booleans as 0 / 1); `decay.<param>` (1 x 1): 1 when the parameter gets weight decay (in torch, a
    second param group with weight_decay 0 holds the others);
  - `lr` (5 x 1): the learning rate of each step (set on the param groups before it; resblocks: set_lr);
  - `param.<name>`: the initial values; `step<k>.grad.<name>`: the gradient given to step k (k = 1..5);
    `step<k>.param.<name>`: the parameters after step k.
  SGDW (decoupled weight decay) is not in torch 1.13: its case multiplies the decayed parameters by
  (1 - lr * weight_decay) with torch ops, then calls torch.optim.SGD without weight decay.

optim_lr_schedules.txt: `<schedule>.lr` (16 x 1), the learning rate torch's scheduler sets at t = 0..15
(t = 0 right after construction, then one scheduler.step() per t), and the schedule's arguments as 1 x 1
tensors: StepLR, CosineAnnealingLR (t_max 6, so t > t_max shows torch's cosine rising again), and the
warm-up SequentialLR([LinearLR(start_factor, 1.0, total_iters=w), after], milestones=[w]) with a
StepLR and a CosineAnnealingLR after it.

optim_clip_grad_norm.txt: per case `<case>.grad.<name>` (the gradients before), `<case>.max_norm`,
`<case>.norm_type` (inf for the max norm), `<case>.total` (the returned total norm, 1 x 1) and
`<case>.clipped.<name>` (the gradients after torch.nn.utils.clip_grad_norm_), including non-finite
gradients (an inf entry, a NaN entry) with error_if_nonfinite=False.
"""

import math
import sys
import warnings

import torch

import make_fixtures
from make_fixtures import DTYPE, quantise
from make_fixtures import parameter as tensor

STEPS = 5
NAMES = ("fc.weight", "fc.bias", "norm.weight")
SHAPES = {"fc.weight": (3, 4), "fc.bias": (3,), "norm.weight": (4,)}
# Gradient scale per step: large, then small gradients, so that AMSGrad's max(v) differs from v.
GRAD_SCALES = (1.0, 2.0, 0.25, 0.5, 0.125)


def Case(name, description):
    return make_fixtures.Case(name, description, generator="make_optimizer_fixtures.py",
                              layout="parameters as resblocks stores them, vectors n x 1")


def scalar(v):
    return torch.tensor([[float(v)]], dtype=DTYPE)


def initial_parameters():
    torch.manual_seed(3001)
    return {n: quantise(torch.randn(*SHAPES[n], dtype=DTYPE)) for n in NAMES}


def gradient_sequence():
    torch.manual_seed(3002)
    return [{n: quantise(s * torch.randn(*SHAPES[n], dtype=DTYPE)) for n in NAMES} for s in GRAD_SCALES]


def run_optimizer(name, description, make, options, decayed=NAMES, lrs=None, sgdw=False):
    """Runs torch optimizer `make(groups, **kw)` for STEPS steps. `options`: the resblocks option
    fields; the parameters not in `decayed` go to a group with weight_decay 0."""
    init = initial_parameters()
    grads = gradient_sequence()
    lrs = lrs or [options["lr"]] * STEPS
    params = {n: init[n].clone().requires_grad_(True) for n in NAMES}
    wd = options.get("weight_decay", 0.0)
    torch_wd = 0.0 if sgdw else wd
    groups = [{"params": [params[n] for n in NAMES if n in decayed], "weight_decay": torch_wd}]
    rest = [params[n] for n in NAMES if n not in decayed]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    opt = make(groups)

    case = Case(name, description)
    for field, value in options.items():
        case.add("option." + field, scalar(value))
    for n in NAMES:
        case.add("decay." + n, scalar(1.0 if n in decayed else 0.0))
    case.add("lr", torch.tensor(lrs, dtype=DTYPE).reshape(-1, 1))
    for n in NAMES:
        case.add("param." + n, tensor(init[n]))
    for k in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lrs[k]
        for n in NAMES:
            params[n].grad = grads[k][n].clone()
        if sgdw:  # SGDW: decoupled decay with torch ops, then SGD without weight decay
            with torch.no_grad():
                for n in decayed:
                    params[n].mul_(1 - lrs[k] * wd)
        opt.step()
        for n in NAMES:
            case.add("step%d.grad.%s" % (k + 1, n), tensor(grads[k][n]))
        for n in NAMES:
            case.add("step%d.param.%s" % (k + 1, n), tensor(params[n]))
    return case


def sgd_options(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, decoupled=False):
    return {"lr": lr, "momentum": momentum, "dampening": dampening, "nesterov": float(nesterov),
            "weight_decay": weight_decay, "decoupled_weight_decay": float(decoupled)}


def make_sgd(o):
    return lambda groups: torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], dampening=o["dampening"],
                                          nesterov=bool(o["nesterov"]))


def adam_options(lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False):
    return {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay,
            "amsgrad": float(amsgrad)}


def make_adam(o, cls):
    return lambda groups: cls(groups, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                              amsgrad=bool(o["amsgrad"]))


def optimizer_cases():
    cases = []
    o = sgd_options(0.1)
    cases.append(run_optimizer("optim_sgd", "torch.optim.SGD(lr=0.1)", make_sgd(o), o))
    o = sgd_options(0.05, momentum=0.9, dampening=0.25)
    cases.append(run_optimizer("optim_sgd_momentum",
                               "SGD(momentum=0.9, dampening=0.25); lr 0.05, 0.05, 0.1, 0.02, 0.02 (set per step)",
                               make_sgd(o), o, lrs=[0.05, 0.05, 0.1, 0.02, 0.02]))
    o = sgd_options(0.1, momentum=0.9, nesterov=True, weight_decay=0.05)
    cases.append(run_optimizer("optim_sgd_nesterov", "SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)",
                               make_sgd(o), o))
    o = sgd_options(0.1, momentum=0.5, weight_decay=0.2)
    cases.append(run_optimizer("optim_sgd_decay_groups",
                               "SGD(lr=0.1, momentum=0.5, weight_decay=0.2), weight decay on fc.weight only",
                               make_sgd(o), o, decayed=("fc.weight",)))
    o = sgd_options(0.1, momentum=0.9, weight_decay=0.2, decoupled=True)
    cases.append(run_optimizer("optim_sgdw",
                               "SGDW: p *= 1 - lr*0.2 (not fc.bias), then SGD(lr=0.1, momentum=0.9)",
                               make_sgd(o), o, decayed=("fc.weight", "norm.weight"), sgdw=True))
    o = adam_options(0.01, weight_decay=0.1)
    cases.append(run_optimizer("optim_adam", "torch.optim.Adam(lr=0.01, weight_decay=0.1)",
                               make_adam(o, torch.optim.Adam), o))
    o = adam_options(0.02, beta1=0.8, beta2=0.99, eps=1e-6, amsgrad=True)
    cases.append(run_optimizer("optim_adam_amsgrad",
                               "Adam(betas=(0.8, 0.99), eps=1e-6, amsgrad=True); lr 0.02, 0.02, 0.01, 0.01, 0.005",
                               make_adam(o, torch.optim.Adam), o, lrs=[0.02, 0.02, 0.01, 0.01, 0.005]))
    o = adam_options(1e-3, weight_decay=1e-2)
    cases.append(run_optimizer("optim_adamw", "torch.optim.AdamW() with its defaults (lr=1e-3, weight_decay=1e-2)",
                               make_adam(o, torch.optim.AdamW), o))
    o = adam_options(0.01, weight_decay=0.5)
    cases.append(run_optimizer("optim_adamw_decay_groups",
                               "AdamW(lr=0.01, weight_decay=0.5), weight decay on fc.weight only",
                               make_adam(o, torch.optim.AdamW), o, decayed=("fc.weight",)))
    check_amsgrad_matters()
    return cases


def check_amsgrad_matters():
    """The amsgrad case must differ from plain Adam, else it would test nothing."""
    init, grads = initial_parameters(), gradient_sequence()
    finals = []
    for amsgrad in (False, True):
        ps = [init[n].clone().requires_grad_(True) for n in NAMES]
        opt = torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, amsgrad=amsgrad)
        for k in range(STEPS):
            for p, n in zip(ps, NAMES):
                p.grad = grads[k][n].clone()
            opt.step()
        finals.append(torch.cat([p.detach().flatten() for p in ps]))
    assert (finals[0] - finals[1]).abs().max() > 1e-4, "amsgrad makes no difference; change GRAD_SCALES"


# --- learning-rate schedules -----------------------------------------------------------------------

SCHEDULE_STEPS = 16


def record_lrs(make_scheduler, base_lr):
    p = torch.zeros(1, dtype=DTYPE, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(1, SCHEDULE_STEPS):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return torch.tensor(lrs, dtype=DTYPE).reshape(-1, 1)


def schedule_case():
    sch = torch.optim.lr_scheduler
    case = Case("optim_lr_schedules",
                "lr at t = 0..15 of StepLR, CosineAnnealingLR and SequentialLR(LinearLR warm-up, then StepLR / "
                "CosineAnnealingLR)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's step(0) is deprecated
        args = {"base_lr": 0.1, "step_size": 4, "gamma": 0.5}
        for k, v in args.items():
            case.add("step_lr." + k, scalar(v))
        case.add("step_lr.lr", record_lrs(lambda o: sch.StepLR(o, step_size=4, gamma=0.5), 0.1))

        args = {"base_lr": 0.2, "t_max": 6, "eta_min": 0.01}
        for k, v in args.items():
            case.add("cosine." + k, scalar(v))
        case.add("cosine.lr", record_lrs(lambda o: sch.CosineAnnealingLR(o, T_max=6, eta_min=0.01), 0.2))

        def warmup(after, w, start):
            return lambda o: sch.SequentialLR(
                o, [sch.LinearLR(o, start_factor=start, end_factor=1.0, total_iters=w), after(o)], milestones=[w])

        args = {"warmup_steps": 3, "start_factor": 0.25, "base_lr": 0.1, "step_size": 4, "gamma": 0.5}
        for k, v in args.items():
            case.add("warmup_step." + k, scalar(v))
        case.add("warmup_step.lr", record_lrs(warmup(lambda o: sch.StepLR(o, step_size=4, gamma=0.5), 3, 0.25), 0.1))

        args = {"warmup_steps": 4, "start_factor": 0.1, "base_lr": 0.2, "t_max": 12, "eta_min": 0.001}
        for k, v in args.items():
            case.add("warmup_cosine." + k, scalar(v))
        case.add("warmup_cosine.lr",
                 record_lrs(warmup(lambda o: sch.CosineAnnealingLR(o, T_max=12, eta_min=0.001), 4, 0.1), 0.2))
    return case


# --- gradient clipping -----------------------------------------------------------------------------


def clip_case():
    case = Case("optim_clip_grad_norm", "torch.nn.utils.clip_grad_norm_ on the gradients of fc.weight, fc.bias, "
                                        "norm.weight")
    torch.manual_seed(3003)
    grads = {n: quantise(2.0 * torch.randn(*SHAPES[n], dtype=DTYPE)) for n in NAMES}
    inf_grads = {n: g.clone() for n, g in grads.items()}
    inf_grads["fc.bias"][1] = math.inf
    nan_grads = {n: g.clone() for n, g in grads.items()}
    nan_grads["fc.weight"][2, 1] = math.nan
    runs = [
        ("norm2", grads, 1.0, 2.0),
        ("norm_inf", grads, 0.5, math.inf),
        ("norm3", grads, 2.0, 3.0),
        ("noclip", grads, 100.0, 2.0),
        ("nonfinite_inf", inf_grads, 1.0, 2.0),
        ("nonfinite_nan", nan_grads, 1.0, math.inf),
    ]
    for name, before, max_norm, norm_type in runs:
        params = [torch.zeros(*SHAPES[n], dtype=DTYPE, requires_grad=True) for n in NAMES]
        for p, n in zip(params, NAMES):
            p.grad = before[n].clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
        for n in NAMES:
            case.add("%s.grad.%s" % (name, n), tensor(before[n]))
        case.add(name + ".max_norm", scalar(max_norm))
        case.add(name + ".norm_type", scalar(norm_type))
        case.add(name + ".total", scalar(total.item()))
        for p, n in zip(params, NAMES):
            case.add("%s.clipped.%s" % (name, n), tensor(p.grad))
    return case


def all_cases():
    return optimizer_cases() + [schedule_case(), clip_case()]


if __name__ == "__main__":
    sys.exit(make_fixtures.main(all_cases, __doc__))
