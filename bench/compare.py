#!/usr/bin/env python3
"""Runs Blixt and PyTorch on the same workloads and thread counts in one run
and prints time per step with the ratio Blixt/PyTorch.

    python3 bench/compare.py [--build build] [--threads 1,2] [--only mlp,cnn] [--rounds 3]

PyTorch runs at its best on these machines: OPENBLAS_CORETYPE=SkylakeX (Debian's
OpenBLAS 0.3.21 otherwise runs SSE3 kernels here), OMP_WAIT_POLICY=PASSIVE, and
torch/OpenBLAS/OpenMP threads all set to the same count as Blixt's. The two
implementations alternate for `rounds` rounds and the best median of each is
kept, so a noisy neighbour hurts both alike. Results are also written as JSON
to bench/out/compare.json.
"""
import argparse
import json
import os
import subprocess
import sys

ORDER = ["sgemm", "mlp", "cnn", "bigmlp", "tinyop", "trainer_overhead", "epoch"]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, threads):
    env = dict(os.environ)
    env.update({"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads),
                "OPENBLAS_CORETYPE": "SkylakeX", "OPENBLAS_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads)})
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"benchmark failed: {' '.join(cmd)}")
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    blixt = os.path.join(a.build, "bin", "blixt-bench-engine")
    blixt_tr = os.path.join(a.build, "bin", "blixt-bench-trainer")
    torch_py = os.path.join(HERE, "torch_bench.py")
    results = {}
    for t in [int(x) for x in a.threads.split(",")]:
        for _ in range(a.rounds):
            extra = (["--only", a.only] if a.only else []) + (["--quick"] if a.quick else [])
            for impl, cmd in (("blixt", [blixt, "--threads", str(t)] + extra),
                              ("blixt", [blixt_tr, "--threads", str(t)] + extra),
                              ("pytorch", ["/usr/bin/python3", torch_py, "--threads", str(t)] + extra)):
                for r in run(cmd, t):
                    key = (r["name"], t, impl)
                    if key not in results or r["ms"] < results[key]["ms"]:
                        results[key] = r
    names = sorted({k[0] for k in results}, key=lambda n: ORDER.index(n) if n in ORDER else 99)
    rows = []
    print(f"{'workload':<10} {'thr':>3} {'blixt':>12} {'pytorch':>12} {'ratio':>7}  notes")
    for n in names:
        for t in sorted({k[1] for k in results}):
            b, p = results.get((n, t, "blixt")), results.get((n, t, "pytorch"))
            if not b:
                continue
            unit = b.get("unit", "ms/step")
            ratio = b["ms"] / p["ms"] if p else float("nan")
            notes = []
            if "gflops" in b:
                notes.append(f"blixt {b['gflops']:.0f} GFLOP/s")
            if "pct_sgemm" in b:
                notes.append(f"= {b['pct_sgemm']:.0f}% of sgemm")
            if p and "gflops" in p:
                notes.append(f"pytorch {p['gflops']:.0f} GFLOP/s")
            pms = f"{p['ms']:.3f}" if p else "-"
            print(f"{n:<10} {t:>3} {b['ms']:>12.3f} {pms:>12} {ratio:>7.2f}  {unit} {'; '.join(notes)}")
            rows.append({"workload": n, "threads": t, "blixt": b, "pytorch": p, "ratio": ratio})
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "compare.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
