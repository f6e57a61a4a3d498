#!/usr/bin/env python3
"""Extra golden cases for the optimizer and scheduler kinds (options the
visible cases in tests/golden/cases do not use): maximize, dampening,
missing grads, per-group betas, three-phase OneCycle on Adam, plateau in max/abs
mode, repeated milestones, SWALR after StepLR, ... Same format as the shared
cases, so blixt-golden runs them (ctest golden/optim_extra).

Run with PyTorch 1.13:  /usr/bin/python3 tests/optim/gen_extra_cases.py
"""
import json
import math
import os
import sys
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
from safetensors_io import save_file  # noqa: E402

OUT = os.path.join(HERE, "cases")


def meta(name, group, kind, op, args, tol, atol, notes=None):
    m = {"case": name, "group": group, "kind": kind, "op": op, "args": json.dumps(args),
         "tol": repr(tol), "atol": repr(atol), "torch": torch.__version__,
         "generator": "tests/optim/gen_extra_cases.py"}
    if notes:
        m["notes"] = notes
    return m


def group_dict(g, names):
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
    d["params"] = names
    return d


def optim_case(name, cls, ctor, groups, steps=5, drop=()):
    """groups: list of (param names, overrides). drop: (step, name) with grad None."""
    torch.manual_seed(zlib.crc32(name.encode()))
    w = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(torch.randn(3))
    params = {"w": w, "b": b}
    t = {"param.w": w.detach().clone().numpy(), "param.b": b.detach().clone().numpy()}
    pg = [dict(params=[params[n] for n in names], **ov) for names, ov in groups]
    opt = cls(pg, **ctor)
    for k in range(1, steps + 1):
        for n, p in params.items():
            if (k, n) in drop:
                p.grad = None
                continue
            g = torch.randn_like(p)
            p.grad = g
            t["in.grad.step%d.%s" % (k, n)] = g.numpy().copy()
        opt.step()
        for n, p in params.items():
            t["out.step%d.%s" % (k, n)] = p.detach().clone().numpy()
            st = opt.state.get(p, {})
            for key, v in st.items():
                if key == "step":
                    t["state.step%d.%s.step" % (k, n)] = torch.tensor(int(float(v)), dtype=torch.int64).numpy()
                elif v is not None:
                    t["state.step%d.%s.%s" % (k, n, key)] = v.detach().clone().numpy()
    args = {"optimizer": cls.__name__, "constructor_kwargs": ctor, "steps": steps,
            "param_groups": [group_dict(g, names) for g, (names, _) in zip(opt.param_groups, groups)]}
    kind = cls.__name__.lower()
    save_file(os.path.join(OUT, "optim", name + ".safetensors"), t,
              meta(name, "optim", kind, name, args, 1e-5, 1e-6))


def sched_case(name, kind, make_opt, make_sched, args, steps=30, metric=None):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make_opt([p])
    s = make_sched(opt)
    lrs, moms = [], []
    for i in range(steps):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["betas"][0] if "betas" in g else g.get("momentum", 0.0))
        opt.step()
        if metric is not None:
            s.step(metric[i])
        else:
            s.step()
    t = {"out.lr": torch.tensor(lrs, dtype=torch.float64).numpy()}
    if kind == "onecycle_lr":
        t["out.momentum"] = torch.tensor(moms, dtype=torch.float64).numpy()
    if metric is not None:
        t["in.metric"] = torch.tensor(metric, dtype=torch.float64).numpy()
    args = dict(args, steps=steps)
    save_file(os.path.join(OUT, "sched", name + ".safetensors"), t,
              meta(name, "sched", kind, name, args, 1e-10, 1e-12))


def swalr_case(name, warm, make_warm, args, steps=30, at=8):
    from torch.optim.swa_utils import SWALR
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    ws = make_warm(opt) if make_warm else None
    lrs = []
    s = None
    for i in range(steps):
        if i == at:
            if args["lightning_style"]:
                for g in opt.param_groups:
                    g["initial_lr"] = args["swa_lr"]
                s = SWALR(opt, swa_lr=args["swa_lr"], anneal_epochs=args["anneal_epochs"],
                          anneal_strategy=args["anneal_strategy"], last_epoch=steps)
            else:
                s = SWALR(opt, swa_lr=args["swa_lr"], anneal_epochs=args["anneal_epochs"],
                          anneal_strategy=args["anneal_strategy"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if i < at:
            if ws:
                ws.step()
        else:
            s.step()
    a = dict(args, scheduler="SWALR", steps=steps, base_lr=0.1, swalr_constructed_at_iteration=at,
             warm_phase=warm)
    save_file(os.path.join(OUT, "sched", name + ".safetensors"),
              {"out.lr": torch.tensor(lrs, dtype=torch.float64).numpy()},
              meta(name, "sched", "swalr", name, a, 1e-10, 1e-12))


def main():
    import warnings
    warnings.simplefilter("ignore")
    os.makedirs(os.path.join(OUT, "optim"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "sched"), exist_ok=True)
    O = torch.optim
    optim_case("x_sgd_dampening_maximize", O.SGD,
               dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01, maximize=True), [(["w", "b"], {})])
    optim_case("x_sgd_groups_missing_grad", O.SGD, dict(lr=0.1, momentum=0.9, nesterov=True),
               [(["w"], {}), (["b"], dict(lr=0.02, momentum=0.0, nesterov=False, weight_decay=0.1))],
               drop={(1, "b"), (3, "b"), (4, "w")})
    optim_case("x_adam_all_options", O.Adam,
               dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.05, amsgrad=True, maximize=True),
               [(["w", "b"], {})], steps=6)
    optim_case("x_adamw_amsgrad", O.AdamW, dict(lr=1e-2, weight_decay=0.1, amsgrad=True), [(["w", "b"], {})])
    optim_case("x_adam_groups", O.Adam, dict(lr=1e-2),
               [(["w"], dict(betas=(0.5, 0.9))), (["b"], dict(lr=3e-2, eps=1e-4, weight_decay=0.2))],
               drop={(2, "w")})
    optim_case("x_rmsprop_all_options", O.RMSprop,
               dict(lr=1e-2, alpha=0.9, eps=1e-6, weight_decay=0.01, momentum=0.5, centered=True, maximize=True),
               [(["w", "b"], {})])
    optim_case("x_rmsprop_groups", O.RMSprop, dict(lr=1e-2),
               [(["w"], dict(momentum=0.9)), (["b"], dict(centered=True, alpha=0.5))])

    L = torch.optim.lr_scheduler
    sgd = lambda ps: O.SGD(ps, lr=0.1, momentum=0.9)  # noqa: E731
    sched_case("x_onecycle_adam_three_phase", "onecycle_lr", lambda ps: O.Adam(ps, lr=0.1),
               lambda o: L.OneCycleLR(o, max_lr=0.05, total_steps=30, pct_start=0.25, anneal_strategy="linear",
                                      div_factor=10.0, final_div_factor=100.0, three_phase=True,
                                      base_momentum=0.8, max_momentum=0.9),
               dict(scheduler="OneCycleLR", optimizer="Adam(lr=0.1)", base_lr=0.1, max_lr=0.05, total_steps=30,
                    pct_start=0.25, anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0,
                    three_phase=True, base_momentum=0.8, max_momentum=0.9, cycle_momentum=True))
    sched_case("x_onecycle_epochs_no_momentum", "onecycle_lr", sgd,
               lambda o: L.OneCycleLR(o, max_lr=0.2, epochs=5, steps_per_epoch=6, cycle_momentum=False),
               dict(scheduler="OneCycleLR", optimizer="SGD(lr=0.1, momentum=0.9)", base_lr=0.1, max_lr=0.2,
                    epochs=5, steps_per_epoch=6, cycle_momentum=False))
    metric = [1.0, 0.9, 0.95, 0.97, 1.2, 1.21, 1.1, 1.3, 1.3, 1.3, 1.31, 1.0, 0.5, 1.5, 1.52, 1.53, 1.54,
              1.55, 1.56, 1.6, 1.6, 1.6, 1.6, 1.6, 1.7, 1.7, 1.7, 1.7, 1.7, 1.7]
    sched_case("x_plateau_max_abs", "reduce_lr_on_plateau", sgd,
               lambda o: L.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=1, threshold=0.05,
                                             threshold_mode="abs", cooldown=2, min_lr=0.001),
               dict(scheduler="ReduceLROnPlateau", optimizer="SGD(lr=0.1, momentum=0.9)", base_lr=0.1, mode="max",
                    factor=0.3, patience=1, threshold=0.05, threshold_mode="abs", cooldown=2, min_lr=0.001,
                    eps=1e-8), metric=metric)
    sched_case("x_cosine_eta0_rmsprop", "cosine_annealing_lr", lambda ps: O.RMSprop(ps, lr=0.05),
               lambda o: L.CosineAnnealingLR(o, T_max=7),
               dict(scheduler="CosineAnnealingLR", optimizer="RMSprop(lr=0.05)", base_lr=0.05, T_max=7))
    sched_case("x_warm_restarts_tmult1", "cosine_annealing_warm_restarts", sgd,
               lambda o: L.CosineAnnealingWarmRestarts(o, T_0=4, eta_min=0.01),
               dict(scheduler="CosineAnnealingWarmRestarts", optimizer="SGD(lr=0.1, momentum=0.9)", base_lr=0.1,
                    T_0=4, T_mult=1, eta_min=0.01))
    sched_case("x_multistep_repeated", "multistep_lr", sgd,
               lambda o: L.MultiStepLR(o, milestones=[3, 3, 8, 20], gamma=0.5),
               dict(scheduler="MultiStepLR", optimizer="SGD(lr=0.1, momentum=0.9)", base_lr=0.1,
                    milestones=[3, 3, 8, 20], gamma=0.5))
    sched_case("x_linear_partial", "linear_lr", sgd,
               lambda o: L.LinearLR(o, start_factor=0.5, end_factor=0.9, total_iters=8),
               dict(scheduler="LinearLR", optimizer="SGD(lr=0.1, momentum=0.9)", base_lr=0.1, start_factor=0.5,
                    end_factor=0.9, total_iters=8))
    sched_case("x_step_lr_adamw", "step_lr", lambda ps: O.AdamW(ps, lr=0.01),
               lambda o: L.StepLR(o, step_size=4, gamma=0.7),
               dict(scheduler="StepLR", optimizer="AdamW(lr=0.01)", base_lr=0.01, step_size=4, gamma=0.7))
    vals = [1.0 / (1 + 0.3 * e) for e in range(31)]
    sched_case("x_lambda_inverse", "lambda_lr", sgd, lambda o: L.LambdaLR(o, lambda e: 1.0 / (1 + 0.3 * e)),
               dict(scheduler="LambdaLR", optimizer="SGD(lr=0.1, momentum=0.9)", base_lr=0.1,
                    lr_lambda="lambda e: 1/(1+0.3*e)", lr_lambda_values=vals))
    swalr_case("x_swalr_after_steplr_anneal0", "StepLR(step_size=3, gamma=0.5) for iterations 0..9",
               lambda o: L.StepLR(o, step_size=3, gamma=0.5),
               dict(swa_lr=0.03, anneal_epochs=0, anneal_strategy="cos", lightning_style=False), at=10)
    swalr_case("x_swalr_linear_lightning", "ExponentialLR(gamma=0.9) for iterations 0..5",
               lambda o: L.ExponentialLR(o, gamma=0.9),
               dict(swa_lr=0.05, anneal_epochs=5, anneal_strategy="linear", lightning_style=True), at=6)


if __name__ == "__main__":
    main()
