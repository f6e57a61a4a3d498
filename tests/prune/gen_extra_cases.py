#!/usr/bin/env python3
"""Extra golden cases for the pruning kinds: options the visible cases in
tests/golden/cases/prune do not use (other amounts, dims, norms including inf,
-inf, 0, 3, 0.5, 'fro', shapes 1-D..4-D, heavy ties on both topk paths
(heap select when k*64 <= n, introselect otherwise), int amounts 0 and n,
structured-after-unstructured, structured twice (zeroed channels skipped),
global over three tensors with ties, three global rounds with updates).
Same format as the shared cases, so blixt-golden runs them (ctest
golden/prune_extra).

Run with PyTorch 1.13:  /usr/bin/python3 tests/prune/gen_extra_cases.py
"""
import json
import math
import os
import sys
import zlib

import torch
import torch.nn as nn
import torch.nn.utils.prune as P

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
from safetensors_io import save_file  # noqa: E402

OUT = os.path.join(HERE, "cases")


def jnorm(n):
    if isinstance(n, str):
        return n
    if math.isinf(n):
        return "inf" if n > 0 else "-inf"
    return n


def meta(name, kind, op, args, notes=None):
    m = {"case": name, "group": "prune", "kind": kind, "op": op, "args": json.dumps(args),
         "tol": "0", "atol": "0", "torch": torch.__version__,
         "generator": "tests/prune/gen_extra_cases.py"}
    if notes:
        m["notes"] = notes
    return m


def seed(name):
    torch.manual_seed(zlib.crc32(name.encode()))


def weight(name, shape, levels=None):
    """Random weight; levels: integer magnitudes 1..levels with random signs (ties)."""
    seed(name)
    if levels:
        mag = torch.randint(1, levels + 1, shape).float() * 0.25
        sign = torch.where(torch.rand(shape) < 0.5, -1.0, 1.0)
        return mag * sign
    return torch.randn(shape)


class Holder(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.weight = nn.Parameter(w.clone())


def save(name, t, m):
    save_file(os.path.join(OUT, name + ".safetensors"), t, m)


def u8(mask):
    return mask.to(torch.uint8).numpy()


def l1_case(name, shape, amount, levels=None):
    w = weight(name, shape, levels)
    h = Holder(w)
    P.l1_unstructured(h, "weight", amount=amount)
    t = {"in.weight": w.numpy(), "out.mask": u8(h.weight_mask), "out.weight": h.weight.detach().numpy(),
         "out.num_pruned": torch.tensor((h.weight_mask == 0).sum().item(), dtype=torch.int64).numpy()}
    args = {"amount": amount, "amount_type": "int" if isinstance(amount, int) else "float",
            "method": "l1_unstructured", "numel": w.numel()}
    save(name, t, meta(name, "prune_l1_unstructured", "l1_unstructured amount=%r on %s" % (amount, list(shape)), args))


def ln_case(name, shape, amount, n, dim, levels=None, w=None):
    if w is None:
        w = weight(name, shape, levels)
    h = Holder(w)
    P.ln_structured(h, "weight", amount=amount, n=n, dim=dim)
    norms = P._compute_norm(w, n, dim)
    d = dim % w.dim()
    pruned = int(sum(1 for c in range(w.shape[d]) if (h.weight_mask.select(d, c) == 0).all()))
    t = {"in.weight": w.numpy(), "out.mask": u8(h.weight_mask), "out.weight": h.weight.detach().numpy(),
         "out.norms": norms.numpy(), "out.num_pruned_slices": torch.tensor(pruned, dtype=torch.int64).numpy()}
    # n as Python's json.dumps writes it: inf -> the bare token Infinity (the
    # runner accepts it); the iterative cases spell it "inf" instead
    args = {"amount": amount, "dim": dim, "method": "ln_structured", "n": n}
    save(name, t, meta(name, "prune_ln_structured",
                       "ln_structured n=%r dim=%d amount=%r on %s" % (n, dim, amount, list(w.shape)), args))


def random_structured_case(name, shape, amount, dim):
    w = weight(name, shape)
    h = Holder(w)
    P.random_structured(h, "weight", amount=amount, dim=dim)
    d = dim % w.dim()
    pruned = int(sum(1 for c in range(w.shape[d]) if (h.weight_mask.select(d, c) == 0).all()))
    t = {"in.weight": w.numpy(), "out.num_pruned_slices": torch.tensor(pruned, dtype=torch.int64).numpy(),
         "out.num_zeros": torch.tensor(int((h.weight_mask == 0).sum()), dtype=torch.int64).numpy()}
    args = {"amount": amount, "dim": dim, "method": "random_structured"}
    save(name, t, meta(name, "prune_random_structured", "random_structured amount=%r dim=%d on %s"
                       % (amount, dim, list(shape)), args, "only the counts are checkable"))


def global_case(name, shapes, amount, levels=None, rounds=1, method=P.L1Unstructured):
    mods = {}
    t = {}
    for i, shape in enumerate(shapes):
        w = weight(name + str(i), shape, levels)
        mods["l%d" % (i + 1)] = Holder(w)
        t["in.l%d.weight" % (i + 1)] = w.numpy()
    params = [(m, "weight") for m in mods.values()]
    for r in range(1, rounds + 1):
        if r > 1:
            seed(name + "update%d" % r)
            for k, m in mods.items():
                u = torch.randn(m.weight_orig.shape) * 0.3
                if levels:
                    u = torch.randint(-2, 3, m.weight_orig.shape).float() * 0.25
                with torch.no_grad():
                    m.weight_orig.add_(u)
                m.weight = m.weight_orig * m.weight_mask  # what the next forward computes
                t["in.update%d.%s.weight_orig" % (r, k)] = u.numpy()
        P.global_unstructured(params, pruning_method=method, amount=amount)
        sfx = ".iter%d" % r if rounds > 1 else ""
        for k, m in mods.items():
            t["out.%s.mask%s" % (k, sfx)] = u8(m.weight_mask)
            t["out.%s.weight%s" % (k, sfx)] = m.weight.detach().numpy()
    args = {"amount": amount, "iterations": rounds, "method": "global_unstructured(%s)" % method.__name__,
            "parameters": ["%s.weight" % k for k in mods]}
    kind = "prune_iterative" if rounds > 1 else "prune_global_unstructured"
    save(name, t, meta(name, kind, "global_unstructured %s amount=%r over %s, %d round(s)"
                       % (method.__name__, amount, [list(s) for s in shapes], rounds), args))


def iterative_case(name, shape, steps, levels=None, update=False):
    w = weight(name, shape, levels)
    h = Holder(w)
    t = {"in.weight": w.numpy()}
    for k, st in enumerate(steps, 1):
        if update and k > 1:
            seed(name + "update%d" % k)
            u = torch.randn(shape) * 0.3
            with torch.no_grad():
                h.weight_orig.add_(u)
            h.weight = h.weight_orig * h.weight_mask
            t["in.update%d.weight_orig" % k] = u.numpy()
        if st["method"] == "l1_unstructured":
            P.l1_unstructured(h, "weight", amount=st["amount"])
        elif st["method"] == "random_unstructured":
            P.random_unstructured(h, "weight", amount=st["amount"])
        elif st["method"] == "ln_structured":
            P.ln_structured(h, "weight", amount=st["amount"], n=st["n"], dim=st["dim"])
        t["out.mask%d" % k] = u8(h.weight_mask)
        t["out.weight%d" % k] = h.weight.detach().numpy()
    args = {"steps": [dict(s, n=jnorm(s["n"])) if "n" in s else s for s in steps]}
    save(name, t, meta(name, "prune_iterative", "iterative pruning on %s: %s" % (list(shape), args["steps"]), args))


def main():
    os.makedirs(OUT, exist_ok=True)
    inf = float("inf")
    # P1 rounding and amount edge cases
    l1_case("x_l1_half_up", [5, 5], 0.3)              # 7.5 -> 8
    l1_case("x_l1_quarter", [2, 5], 0.25)             # 2.5 -> 2
    l1_case("x_l1_zero", [4, 4], 0.0)
    l1_case("x_l1_all", [4, 4], 1.0)
    l1_case("x_l1_int0", [4, 4], 0)
    l1_case("x_l1_intn", [3, 4], 12)
    l1_case("x_l1_1d", [17], 0.4)
    l1_case("x_l1_4d", [4, 3, 3, 3], 0.55)
    # ties on both topk paths
    l1_case("x_l1_ties_heap", [40, 32], 15, levels=3)       # k*64 <= n: heap select
    l1_case("x_l1_ties_heap2", [1000], 0.01, levels=2)
    l1_case("x_l1_ties_intro", [40, 32], 0.37, levels=4)    # introselect on 1280
    l1_case("x_l1_ties_intro_big", [3000], 0.5, levels=5)   # deep introselect
    l1_case("x_l1_ties_small", [3, 3], 0.45, levels=2)
    # ln_structured norms, dims, shapes
    ln_case("x_ln_inf_dim0", [6, 5], 0.5, inf, 0)
    ln_case("x_ln_ninf_dim1", [6, 5], 2, -inf, 1)
    ln_case("x_ln_fro_dim_m1", [6, 7], 0.3, "fro", -1)
    ln_case("x_ln_p3_conv_dim1", [4, 6, 3, 3], 0.5, 3, 1)
    ln_case("x_ln_p05_dim_m2", [5, 8], 0.4, 0.5, -2)
    ln_case("x_ln_n2_3d_dim2", [3, 4, 6], 4, 2, 2)
    ln_case("x_ln_n1_conv_dim3", [4, 3, 2, 5], 0.6, 1, 3)
    ln_case("x_ln_p0_ties", [8, 5], 0.5, 0, 0)              # every norm = 5: all tied
    ln_case("x_ln_n1_ties", [10, 4], 0.3, 1, 0, levels=1)   # all |w| equal: tied norms
    ln_case("x_ln_n2_ties_rows", [12, 3], 5, 2, 0, levels=2)
    ln_case("x_ln_all", [4, 3], 1.0, 2, 0)
    ln_case("x_ln_zero", [4, 3], 0, 2, 1)
    ln_case("x_ln_pm1", [6, 4], 0.5, -1, 0)
    ln_case("x_ln_big_heap", [200, 3], 3, 1, 0, levels=2)   # k_keep=197: introselect; prune 3
    ln_case("x_ln_heap_keep3", [200, 3], 197, 1, 0, levels=2)  # keep 3 of 200: heap select, tied norms
    random_structured_case("x_rs_dim0", [6, 4], 0.5, 0)
    random_structured_case("x_rs_dim_m1", [3, 4, 5], 2, -1)
    # global
    global_case("x_global3", [[6, 5], [4, 6], [10]], 0.45)
    global_case("x_global_int", [[4, 3, 3, 3], [8, 9]], 40)
    global_case("x_global_ties", [[20, 10], [10, 15]], 0.33, levels=3)
    global_case("x_global_rounds3", [[6, 5], [4, 6]], 0.25, rounds=3)
    global_case("x_global_rounds_ties", [[8, 8], [5, 8]], 0.3, levels=3, rounds=3)
    global_case("x_global_random", [[6, 5], [4, 6]], 0.4, method=P.RandomUnstructured)
    global_case("x_global_random_rounds", [[6, 5], [4, 6]], 0.5, rounds=2, method=P.RandomUnstructured)
    # iterative local
    iterative_case("x_it_l1_ln", [6, 5], [{"method": "l1_unstructured", "amount": 0.5},
                                          {"method": "ln_structured", "amount": 0.5, "n": 1, "dim": 0}])
    iterative_case("x_it_ln_ln", [8, 4], [{"method": "ln_structured", "amount": 0.25, "n": 2, "dim": 0},
                                          {"method": "ln_structured", "amount": 0.5, "n": 2, "dim": 0},
                                          {"method": "ln_structured", "amount": 1, "n": 2, "dim": 0}])
    iterative_case("x_it_ln_l1", [4, 3, 3, 3], [{"method": "ln_structured", "amount": 0.5, "n": inf, "dim": 1},
                                                {"method": "l1_unstructured", "amount": 0.3}])
    iterative_case("x_it_l1_x3_upd", [7, 6], [{"method": "l1_unstructured", "amount": 0.3}] * 3, update=True)
    iterative_case("x_it_l1_ln_zeroed", [6, 2], [{"method": "l1_unstructured", "amount": 6},
                                                 {"method": "ln_structured", "amount": 0.5, "n": 1, "dim": 0}],
                   levels=2)
    iterative_case("x_it_ln_dim1_upd", [5, 8], [{"method": "ln_structured", "amount": 0.25, "n": 2, "dim": 1},
                                                {"method": "ln_structured", "amount": 0.5, "n": 1, "dim": -1}],
                   update=True)
    iterative_case("x_it_random_l1", [6, 5], [{"method": "random_unstructured", "amount": 0.3},
                                              {"method": "l1_unstructured", "amount": 0.5}])
    iterative_case("x_it_ties", [12, 10], [{"method": "l1_unstructured", "amount": 0.2},
                                           {"method": "l1_unstructured", "amount": 17},
                                           {"method": "l1_unstructured", "amount": 0.5}], levels=3)


if __name__ == "__main__":
    main()
