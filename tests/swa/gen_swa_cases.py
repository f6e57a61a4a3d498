#!/usr/bin/env python3
"""Extra golden cases for kind averaged_model (group swa): other model sizes,
two BatchNorms, bias=False, a strided CNN, use_buffers on a CNN, irregular
update_bn batch sizes (not a DataLoader pattern) and buffers that differ
between snapshots (num_batches_tracked truncation). Same format and
conventions as tests/golden/cases/swa, so blixt-golden runs them (ctest
golden/swa_extra).

Run with PyTorch 1.13:  /usr/bin/python3 tests/swa/gen_swa_cases.py
"""
import json
import os
import sys
import zlib

import torch
from torch.optim.swa_utils import AveragedModel, update_bn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
from safetensors_io import save_file  # noqa: E402

OUT = os.path.join(HERE, "cases")


class CNN(torch.nn.Module):
    def __init__(self, cin, cmid, k, stride, padding, ncls, pool):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cmid, k, stride=stride, padding=padding)
        self.bn = torch.nn.BatchNorm2d(cmid)
        self.fc = torch.nn.Linear(cmid * pool * pool, ncls)
        self.pool = pool

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.nn.functional.adaptive_avg_pool2d(x, self.pool)
        return self.fc(torch.flatten(x, 1))


class MLP(torch.nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def np(t):
    return t.detach().clone().numpy()


def case(name, model, desc, kind, in_shape, snaps, batches, use_buffers):
    torch.manual_seed(zlib.crc32(name.encode()))
    for p in model.parameters():  # random start, not the default init
        p.data.copy_(torch.randn_like(p) * 0.5)
    # a few train forwards so the buffers are not 0/1 at construction
    for _ in range(3):
        model(torch.randn(4, *in_shape))
    t = {}
    for k, v in model.state_dict().items():
        t[("buf." if k.endswith(("running_mean", "running_var", "num_batches_tracked")) else "param.") + k] = np(v)
    swa = AveragedModel(model, use_buffers=use_buffers)
    live = model
    for k in range(1, snaps + 1):
        with torch.no_grad():
            for p in live.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        for _ in range(1 + 7 * k):  # buffers move; num_batches_tracked grows unevenly
            live(torch.randn(3, *in_shape) * (1 + k))
        for key, v in live.state_dict().items():
            if use_buffers or not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                t["in.snap%d.%s" % (k, key)] = np(v)
        swa.update_parameters(live)
        for key, v in swa.module.state_dict().items():
            if use_buffers or not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                t["out.step%d.%s" % (k, key)] = np(v)
    for key, v in swa.module.named_buffers():
        t["out.before_update_bn." + key] = np(v)
    loader = [torch.randn(b, *in_shape) for b in batches]
    for j, x in enumerate(loader):
        t["in.loader.%d" % j] = np(x)
    update_bn(loader, swa)
    for key, v in swa.module.state_dict().items():
        t["out.final." + key] = np(v)
    t["out.n_averaged"] = np(swa.n_averaged)
    ex = torch.randn(5, *in_shape)
    swa.eval()
    with torch.no_grad():
        t["in.eval_x"] = np(ex)
        t["out.eval_y"] = np(swa(ex))
    args = {"avg_fn": "default: avg + (p - avg) / (n_averaged + 1)", "bn_eps": 1e-05,
            "loader_batch_sizes": batches, "model": desc, "model_kind": kind,
            "snapshots": snaps, "use_buffers": use_buffers}
    meta = {"case": name, "group": "swa", "kind": "averaged_model",
            "op": "AveragedModel(use_buffers=%s) of %s" % (use_buffers, desc), "args": json.dumps(args),
            "tol": "1e-05", "atol": "1e-06", "torch": torch.__version__,
            "generator": "tests/swa/gen_swa_cases.py"}
    save_file(os.path.join(OUT, name + ".safetensors"), t, meta)


def mlp(sizes, bias=True):
    """Linear-BN-ReLU blocks then a Linear; desc in the shared cases' notation."""
    layers, desc = [], []
    for i in range(len(sizes) - 2):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1], bias=bias), torch.nn.BatchNorm1d(sizes[i + 1]),
                   torch.nn.ReLU()]
    layers.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    for i, l in enumerate(layers):
        if isinstance(l, torch.nn.Linear):
            extra = "" if l.bias is not None else ",bias=False"
            desc.append("net.%d=Linear(%d,%d%s)" % (i, l.in_features, l.out_features, extra))
        elif isinstance(l, torch.nn.BatchNorm1d):
            desc.append("net.%d=BatchNorm1d(%d)" % (i, l.num_features))
        else:
            desc.append("ReLU")
    return MLP(layers), "MLP " + "-".join(desc)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    m, d = mlp([6, 10, 4])
    case("swax_mlp_wide_buffers", m, d, "mlp", (6,), 5, [7, 7, 3], True)
    m, d = mlp([4, 6, 6, 2])
    case("swax_mlp_two_bn", m, d, "mlp", (4,), 3, [3, 8, 5], False)
    m, d = mlp([5, 7, 3], bias=False)
    case("swax_mlp_nobias_irregular", m, d, "mlp", (5,), 2, [2, 9, 9, 4, 3], True)
    c = CNN(3, 4, 3, 1, 1, 3, 1)
    case("swax_cnn_buffers", c, "CNN conv=Conv2d(3,4,3,padding=1)-bn=BatchNorm2d(4)-relu-adaptive_avg_pool2d(1)"
         "-flatten-fc=Linear(4,3), input [N,3,6,6]", "cnn", (3, 6, 6), 4, [3, 3, 3, 1], True)
    c = CNN(2, 5, 3, 2, 0, 2, 2)
    case("swax_cnn_stride_pool2", c, "CNN conv=Conv2d(2,5,3,stride=2)-bn=BatchNorm2d(5)-relu-adaptive_avg_pool2d(2)"
         "-flatten-fc=Linear(20,2), input [N,2,9,9]", "cnn", (2, 9, 9), 3, [6, 6], False)


if __name__ == "__main__":
    main()
