#!/usr/bin/env python3
"""Extra golden cases for the qat kinds (options the visible cases in
tests/golden/cases/qat do not use): reduce_range FakeQuantize, per-channel
affine along ch_axis 1, MinMax observers, symmetric per-tensor weights,
other averaging constants, fused modules for the qnnpack qconfig and on a
4-D conv weight (torch's fused op supports per-channel on axis 0 only), and qat_convert with the qnnpack qconfig (per-tensor
weights, full-range activations) and with three layers. Same format as the
shared cases, so blixt-golden runs them (ctest golden/qat_extra).

Run with PyTorch 1.13:  /usr/bin/python3 tests/quant/gen_qat_cases.py
"""
import json
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
from torch.ao import quantization as tq
from torch.ao.quantization import observer as obs
from torch.ao.quantization import fake_quantize as fqm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
from safetensors_io import save_file  # noqa: E402

OUT = os.path.join(HERE, "cases")


def meta(name, kind, op, args, tol, atol):
    return {"case": name, "group": "qat", "kind": kind, "op": op, "args": json.dumps(args),
            "tol": repr(tol), "atol": repr(atol), "torch": torch.__version__,
            "generator": "tests/quant/gen_qat_cases.py"}


def npy(t):
    return t.detach().cpu().numpy().copy()


def convert_outputs(t, m, ex):
    """The eval output of the prepared model m (eval mode) on ex, then
    convert: the int8 layers' weights, qparams and the int8 outputs."""
    t["in.eval_x"] = npy(ex)
    with torch.no_grad():
        t["out.qat_eval_y"] = npy(m(ex))
    q = tq.convert(m, inplace=False)
    t["out.input_scale"] = np.array(float(q.quant.scale), dtype=np.float64)
    t["out.input_zero_point"] = np.array(int(q.quant.zero_point), dtype=np.int64)
    for i in range(1, m.n + 1):
        l = getattr(q, "fc%d" % i)
        w = l.weight()
        t["out.fc%d.weight_int8" % i] = npy(w.int_repr())
        if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            t["out.fc%d.weight_scales" % i] = npy(w.q_per_channel_scales()).astype(np.float64)
            t["out.fc%d.weight_zero_points" % i] = npy(w.q_per_channel_zero_points()).astype(np.int64)
        else:
            t["out.fc%d.weight_scales" % i] = np.array([w.q_scale()], dtype=np.float64)
            t["out.fc%d.weight_zero_points" % i] = np.array([w.q_zero_point()], dtype=np.int64)
        t["out.fc%d.bias" % i] = npy(l.bias())
        t["out.fc%d.scale" % i] = np.array(float(l.scale), dtype=np.float64)
        t["out.fc%d.zero_point" % i] = np.array(int(l.zero_point), dtype=np.int64)
    outs = {}
    getattr(q, "fc%d" % m.n).register_forward_hook(lambda mod, i, o: outs.__setitem__("q", o))
    with torch.no_grad():
        y = q(ex)
    t["out.y"] = npy(y)
    t["out.y_quint8"] = npy(outs["q"].int_repr())


QS = {torch.per_tensor_affine: "per_tensor_affine", torch.per_tensor_symmetric: "per_tensor_symmetric",
      torch.per_channel_affine: "per_channel_affine", torch.per_channel_symmetric: "per_channel_symmetric"}


def fq_case(name, module, observer, steps, shape, gen, **kw):
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    fused = module == "FusedMovingAvgObsFakeQuantize"
    cls = fqm.FusedMovingAvgObsFakeQuantize if fused else fqm.FakeQuantize
    fq = cls(observer=getattr(obs, observer), **kw)
    fq.train()
    o = fq.activation_post_process
    args = {"module": module, "observer": observer, "dtype": str(o.dtype).replace("torch.", ""),
            "qscheme": QS[o.qscheme], "quant_min": o.quant_min, "quant_max": o.quant_max,
            "reduce_range": bool(kw.get("reduce_range", False)), "eps": float(o.eps)}
    if hasattr(o, "averaging_constant"):
        args["averaging_constant"] = o.averaging_constant
    if hasattr(o, "ch_axis"):
        args["ch_axis"] = o.ch_axis
    t = {}
    for k in range(1, steps + 1):
        x = gen(k, shape).requires_grad_(True)
        g = torch.randn(shape)
        y = fq(x)
        y.backward(g)
        t["in.x.step%d" % k] = npy(x)
        t["in.g.step%d" % k] = npy(g)
        t["out.y.step%d" % k] = npy(y)
        t["grad.x.step%d" % k] = npy(x.grad)
        t["out.min_val.step%d" % k] = npy(o.min_val)
        t["out.max_val.step%d" % k] = npy(o.max_val)
        t["out.scale.step%d" % k] = npy(fq.scale)
        t["out.zero_point.step%d" % k] = npy(fq.zero_point).astype(np.int32)
        if fused:
            s, z = o.calculate_qparams()
            t["out.observer_scale.step%d" % k] = npy(s)
            t["out.observer_zero_point.step%d" % k] = npy(z).astype(np.int32)
    kind = "fused_fake_quantize" if fused else "fake_quantize"
    save_file(os.path.join(OUT, name + ".safetensors"), t,
              meta(name, kind, "%s(%s) %s" % (module, observer, json.dumps(kw, default=str)), args, 1e-6, 1e-7))


def fq_op_per_channel(name):
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    x = (torch.randn(3, 4, 5) * 2).requires_grad_(True)
    scales = [0.05, 0.125, 0.02, 0.3]
    zps = [0, 3, -7, 10]
    y = torch.fake_quantize_per_channel_affine(x, torch.tensor(scales), torch.tensor(zps, dtype=torch.int32), 1,
                                               -128, 127)
    g = torch.randn(3, 4, 5)
    y.backward(g)
    t = {"in.x": npy(x), "in.g": npy(g), "out.y": npy(y), "grad.x": npy(x.grad)}
    args = {"scale": scales, "zero_point": zps, "axis": 1, "quant_min": -128, "quant_max": 127}
    save_file(os.path.join(OUT, name + ".safetensors"), t,
              meta(name, "fake_quantize", "fake_quantize_per_channel_affine(x, scale, zp, axis 1, -128, 127)", args,
                   0, 0))


def randn(k, shape):
    return torch.randn(shape) * (0.5 + k * 0.4) + 0.1 * k


def mixed_rows(k, shape):
    x = torch.randn(shape) * (1 + 0.2 * k)
    x[1] = x[1].abs() + 0.05   # all positive along dim 0
    x[3] = -x[3].abs() - 0.05  # all negative
    return x


class Net(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.quant = tq.QuantStub()
        self.n = len(sizes) - 1
        for i in range(self.n):
            setattr(self, "fc%d" % (i + 1), nn.Linear(sizes[i], sizes[i + 1]))
            if i + 1 < self.n:
                setattr(self, "relu%d" % (i + 1), nn.ReLU())
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        for i in range(self.n):
            x = getattr(self, "fc%d" % (i + 1))(x)
            if i + 1 < self.n:
                x = getattr(self, "relu%d" % (i + 1))(x)
        return self.dequant(x)


def convert_case(name, qconfig_name, engine, sizes, batches=5, lr=0.05):
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    torch.backends.quantized.engine = engine
    m = Net(sizes)
    t = {}
    for k, v in m.state_dict().items():
        t["param." + k] = npy(v)
    m.qconfig = tq.get_default_qat_qconfig(qconfig_name)
    m.train()
    tq.fuse_modules_qat(m, [["fc%d" % (i + 1), "relu%d" % (i + 1)] for i in range(m.n - 1)], inplace=True)
    tq.prepare_qat(m, inplace=True)
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    losses = []
    for k in range(1, batches + 1):
        x = torch.randn(16, sizes[0]) * 1.5
        y = torch.randint(0, sizes[-1], (16,))
        t["in.batch%d.x" % k] = npy(x)
        t["in.batch%d.y" % k] = npy(y)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    t["out.qat_loss"] = np.array(losses, dtype=np.float32)
    for k, v in m.state_dict().items():
        t["out.qat." + k] = npy(v)
    m.eval()
    ex = torch.randn(12, sizes[0]) * 1.5
    convert_outputs(t, m, ex)
    args = {"qconfig_name": qconfig_name, "engine": engine, "lr": lr, "sizes": sizes}
    save_file(os.path.join(OUT, name + ".safetensors"), t,
              meta(name, "qat_convert", "QAT MLP %s, qconfig %s, engine %s" % (sizes, qconfig_name, engine),
                   args, 1e-4, 1e-5))


class ConvNet(nn.Module):
    def __init__(self, relu, **kw):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 5, 3, **kw)
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.relu(self.conv(self.quant(x))))


def qconv_data(prefix, t, meta_out, qconfig_name, engine, relu, **kw):
    """A QAT Conv2d[+ReLU] converted by torch on `engine`: its quantized
    parameters, an input and torch's integer output, for test_qconv.c."""
    torch.manual_seed(zlib.crc32(prefix.encode()) % 1000)
    torch.backends.quantized.engine = engine
    m = ConvNet(relu, **kw)
    m.qconfig = tq.get_default_qat_qconfig(qconfig_name)
    m.train()
    if relu:
        tq.fuse_modules_qat(m, [["conv", "relu"]], inplace=True)
    tq.prepare_qat(m, inplace=True)
    for _ in range(3):
        m(torch.randn(2, 3, 9, 8))
    m.eval()
    q = tq.convert(m, inplace=False)
    x = torch.randn(2, 3, 9, 8) * 1.2
    outs = {}
    q.conv.register_forward_hook(lambda mod, i, o: outs.__setitem__("q", o))
    with torch.no_grad():
        y = q(x)
    w = q.conv.weight()
    t[prefix + ".x"] = npy(x)
    t[prefix + ".weight_int8"] = npy(w.int_repr())
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        t[prefix + ".weight_scales"] = npy(w.q_per_channel_scales()).astype(np.float64)
        t[prefix + ".weight_zero_points"] = npy(w.q_per_channel_zero_points()).astype(np.int64)
    else:
        t[prefix + ".weight_scales"] = np.array([w.q_scale()], dtype=np.float64)
        t[prefix + ".weight_zero_points"] = np.array([w.q_zero_point()], dtype=np.int64)
    t[prefix + ".bias"] = npy(q.conv.bias())
    t[prefix + ".scale"] = np.array(float(q.conv.scale), dtype=np.float64)
    t[prefix + ".zero_point"] = np.array(int(q.conv.zero_point), dtype=np.int64)
    t[prefix + ".input_scale"] = np.array(float(q.quant.scale), dtype=np.float64)
    t[prefix + ".input_zero_point"] = np.array(int(q.quant.zero_point), dtype=np.int64)
    t[prefix + ".y_quint8"] = npy(outs["q"].int_repr())
    t[prefix + ".y"] = npy(y)
    meta_out[prefix] = json.dumps({"relu": relu, "stride": list(m.conv.stride), "padding": list(m.conv.padding),
                                   "dilation": list(m.conv.dilation), "engine": engine, "qconfig": qconfig_name})


def main():
    os.makedirs(OUT, exist_ok=True)
    t, mo = {}, {}
    qconv_data("a", t, mo, "fbgemm", "onednn", True, stride=2, padding=1)
    qconv_data("b", t, mo, "qnnpack", "qnnpack", False, dilation=2, padding=(0, 2))
    qconv_data("c", t, mo, "qnnpack", "onednn", True, stride=(1, 2))
    save_file(os.path.join(HERE, "qconv_torch.safetensors"), t, mo)
    fq_case("qatx_fq_reduce_range", "FakeQuantize", "MovingAverageMinMaxObserver", 5, (4, 6), randn,
            quant_min=0, quant_max=255, reduce_range=True)
    fq_case("qatx_fq_pc_affine_axis1", "FakeQuantize", "MovingAveragePerChannelMinMaxObserver", 4, (3, 5, 2),
            randn, quant_min=0, quant_max=255, dtype=torch.quint8, qscheme=torch.per_channel_affine, ch_axis=1,
            averaging_constant=0.1)
    fq_case("qatx_fq_minmax_sym", "FakeQuantize", "MinMaxObserver", 4, (5, 4), randn,
            quant_min=-128, quant_max=127, dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    fq_case("qatx_fq_pc_minmax_qint8_reduce", "FakeQuantize", "PerChannelMinMaxObserver", 3, (6, 5), mixed_rows,
            quant_min=-128, quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_affine, reduce_range=True)
    fq_case("qatx_fused_qnnpack_act", "FusedMovingAvgObsFakeQuantize", "MovingAverageMinMaxObserver", 5, (4, 6),
            randn, quant_min=0, quant_max=255, reduce_range=False, averaging_constant=0.05)
    fq_case("qatx_fused_qnnpack_weight", "FusedMovingAvgObsFakeQuantize", "MovingAverageMinMaxObserver", 4, (6, 5),
            randn, quant_min=-128, quant_max=127, dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    fq_case("qatx_fused_pc_conv_weight", "FusedMovingAvgObsFakeQuantize", "MovingAveragePerChannelMinMaxObserver",
            3, (6, 3, 2, 2), mixed_rows, quant_min=-128, quant_max=127, dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric, averaging_constant=0.2)
    fq_op_per_channel("qatx_fq_op_per_channel")
    convert_case("qatx_convert_qnnpack", "qnnpack", "qnnpack", [8, 16, 4])
    convert_case("qatx_convert_fbgemm_3layers", "fbgemm", "onednn", [10, 12, 7, 3])
    print("wrote", len(os.listdir(OUT)), "cases to", OUT)


if __name__ == "__main__":
    main()
