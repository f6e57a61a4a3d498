#!/usr/bin/env python3
"""Golden cases for torch 1.13's HistogramObserver (kind histogram_observer)
and for QAT with the post-training qconfig get_default_qconfig(backend)
(kind qat_convert with args.qconfig_kind = "ptq": what Lightning 1.9.5's
QuantizationAwareTraining(observer_type="histogram") runs).

histogram_observer cases: in.x.stepK fed to a fresh observer one after the
other; after each: out.histogram/min_val/max_val.stepK (the buffers),
out.new_min/new_max.stepK (_non_linear_param_search) and
out.scale/zero_point.stepK (calculate_qparams). Data: one-sided, symmetric,
outliers, constant tensors (0 and not), integer data, ranges where int()
truncation of min/max drops elements, growing / shrinking / shifting ranges
(the combine path), large magnitudes (inexact linspace edges); fbgemm
(reduce_range), qnnpack, symmetric qint8, other bins / upsample_rate.
All compared exactly (tol 0): Blixt reproduces the float32/float64 mix.

Run with PyTorch 1.13:  /usr/bin/python3 tests/quant/gen_hist_cases.py
"""
import json
import os
import sys
import warnings
import zlib

import numpy as np
import torch
import torch.nn as nn
from torch.ao import quantization as tq
from torch.ao.quantization import observer as obs

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
sys.path.insert(0, HERE)
from safetensors_io import save_file  # noqa: E402
import gen_qat_cases as gq  # noqa: E402

OUT = os.path.join(HERE, "cases")
warnings.filterwarnings("ignore")


def meta(name, kind, op, args, tol, atol):
    return {"case": name, "group": "qat", "kind": kind, "op": op, "args": json.dumps(args),
            "tol": repr(tol), "atol": repr(atol), "torch": torch.__version__,
            "generator": "tests/quant/gen_hist_cases.py"}


QS = {torch.per_tensor_affine: "per_tensor_affine", torch.per_tensor_symmetric: "per_tensor_symmetric"}


def hist_case(name, batches, **kw):
    o = obs.HistogramObserver(**kw)
    args = {"observer": "HistogramObserver", "dtype": str(o.dtype).replace("torch.", ""), "qscheme": QS[o.qscheme],
            "reduce_range": bool(kw.get("reduce_range", False)), "bins": o.bins, "upsample_rate": o.upsample_rate,
            "eps": float(o.eps)}
    if "quant_min" in kw:
        args["quant_min"] = kw["quant_min"]
        args["quant_max"] = kw["quant_max"]
    t = {}
    for k, x in enumerate(batches, 1):
        x = x.float()
        o(x)
        t["in.x.step%d" % k] = gq.npy(x)
        t["out.histogram.step%d" % k] = gq.npy(o.histogram)
        t["out.min_val.step%d" % k] = gq.npy(o.min_val)
        t["out.max_val.step%d" % k] = gq.npy(o.max_val)
        if o.min_val.item() != float("inf"):
            nmin, nmax = o._non_linear_param_search()
            t["out.new_min.step%d" % k] = gq.npy(nmin)
            t["out.new_max.step%d" % k] = gq.npy(nmax)
        s, z = o.calculate_qparams()
        t["out.scale.step%d" % k] = gq.npy(s).astype(np.float32)
        t["out.zero_point.step%d" % k] = gq.npy(z).astype(np.int32)
    keys = list(o.state_dict().keys())
    args["state_keys"] = keys
    save_file(os.path.join(OUT, name + ".safetensors"), t,
              meta(name, "histogram_observer", "HistogramObserver(%s)" % json.dumps(kw, default=str), args, 0, 0))


def gen(name):
    torch.manual_seed(zlib.crc32(name.encode()) % 10000)


def hist_cases():
    gen("relu")
    hist_case("qhist_fbgemm_one_sided", [torch.relu(torch.randn(64, 16)) * (1 + k) for k in range(4)],
              reduce_range=True)
    gen("sym")
    hist_case("qhist_qnnpack_symmetric_data", [torch.randn(8, 32) * s for s in (2.0, 1.0, 3.5, 0.5)])
    gen("outl")
    b = []
    for k in range(4):
        x = torch.randn(256) * 0.3
        x[k * 7] = 25.0 + 10 * k
        x[k * 7 + 1] = -4.0 * (k + 1)
        b.append(x)
    hist_case("qhist_fbgemm_outliers", b, reduce_range=True)
    gen("const")
    hist_case("qhist_constant", [torch.full((5, 5), 0.5), torch.full((5, 5), 0.5), torch.randn(5, 5),
                                 torch.full((5, 5), 3.0)])
    hist_case("qhist_zeros_then_data", [torch.zeros(10), torch.zeros(3), torch.rand(10) * 2, torch.zeros(4)],
              reduce_range=True)
    hist_case("qhist_constant_int", [torch.full((7,), 3.0), torch.full((7,), -2.0), torch.arange(7.0)])
    gen("int")
    hist_case("qhist_integer_data", [torch.randint(-5, 20, (300,)).float(), torch.randint(0, 9, (300,)).float(),
                                     torch.randint(-30, 40, (300,)).float()])
    gen("trunc")
    hist_case("qhist_int_truncation", [torch.rand(200) * 3.2 - 0.7, torch.rand(200) * 0.8 + 0.1,
                                       torch.rand(200) * 2.6 - 1.9, torch.rand(200) * 5.5 - 0.2])
    hist_case("qhist_subunit_range", [torch.rand(100) * 0.8 + 0.1, torch.rand(100) * 0.6 - 0.7,
                                      torch.rand(100) * 0.05])
    gen("grow")
    hist_case("qhist_growing_shifting", [torch.randn(128) * 0.1, torch.randn(128) * 2 + 3, torch.randn(128) * 0.05,
                                         torch.randn(128) * 10 - 20, torch.randn(128) * 0.5], reduce_range=True)
    gen("large")
    hist_case("qhist_large_values", [torch.randn(512) * 3000 + 12345, torch.randn(512) * 9000,
                                     torch.rand(512) * 70000 - 1000])
    gen("sym8")
    hist_case("qhist_symmetric_qint8", [torch.randn(6, 20) * 1.5 + 0.3, torch.relu(torch.randn(6, 20)) * 4],
              dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    gen("small")
    hist_case("qhist_bins256_up16", [torch.randn(3, 40) * 2, torch.randn(3, 40) * 6 + 1, torch.rand(3, 40)],
              bins=256, upsample_rate=16, quant_min=0, quant_max=255, reduce_range=True)
    gen("nd")
    hist_case("qhist_4d_activation", [torch.relu(torch.randn(2, 3, 5, 5) + 0.2) * (k + 1) for k in range(3)])


def ptq_convert_case(name, backend, engine, sizes, batches=5, lr=0.05, dyadic=False):
    """QAT with get_default_qconfig(backend) (observers, float training) as
    Lightning's observer_type="histogram": the same record as qat_convert.
    dyadic: inputs and initial weights on a coarse binary grid and lr 0, so
    every float sum is exact and the histograms compare bit for bit."""
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    torch.backends.quantized.engine = engine
    m = gq.Net(sizes)
    if dyadic:
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.round(p * 16) / 16)
    t = {}
    for k, v in m.state_dict().items():
        t["param." + k] = gq.npy(v)
    m.qconfig = tq.get_default_qconfig(backend)
    m.train()
    tq.fuse_modules_qat(m, [["fc%d" % (i + 1), "relu%d" % (i + 1)] for i in range(m.n - 1)], inplace=True)
    tq.prepare_qat(m, inplace=True)
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    losses = []
    for k in range(1, batches + 1):
        x = torch.randn(16, sizes[0]) * 1.5
        if dyadic:
            x = torch.round(x * 4) / 4
        y = torch.randint(0, sizes[-1], (16,))
        t["in.batch%d.x" % k] = gq.npy(x)
        t["in.batch%d.y" % k] = gq.npy(y)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    t["out.qat_loss"] = np.array(losses, dtype=np.float32)
    for k, v in m.state_dict().items():
        t["out.qat." + k] = gq.npy(v)
    m.eval()
    ex = torch.randn(12, sizes[0]) * 1.5
    if dyadic:
        ex = torch.round(ex * 4) / 4
    gq.convert_outputs(t, m, ex)
    args = {"qconfig_name": backend, "qconfig_kind": "ptq", "engine": engine, "lr": lr, "sizes": sizes}
    # dyadic: exact float sums, so the histograms and every qparam compare
    # exactly; trained: an activation 1 ulp off can move a count to the
    # next bin, so histograms get an absolute tolerance of 2 counts
    args["histogram_atol"] = 0.0 if dyadic else 2.0
    if dyadic:
        args["qparams_tol"] = 0.0
    tol, atol = 1e-4, 1e-5
    save_file(os.path.join(OUT, name + ".safetensors"), t,
              meta(name, "qat_convert", "QAT MLP %s, get_default_qconfig(%s) (histogram), engine %s" %
                   (sizes, backend, engine), args, tol, atol))


def main():
    os.makedirs(OUT, exist_ok=True)
    hist_cases()
    ptq_convert_case("qhist_convert_fbgemm_dyadic", "fbgemm", "onednn", [8, 16, 4], lr=0.0, dyadic=True)
    ptq_convert_case("qhist_convert_qnnpack_dyadic", "qnnpack", "qnnpack", [6, 10, 7, 3], lr=0.0, dyadic=True)
    ptq_convert_case("qhist_convert_fbgemm_trained", "fbgemm", "onednn", [8, 16, 4])
    print("wrote histogram cases to", OUT)


if __name__ == "__main__":
    main()
