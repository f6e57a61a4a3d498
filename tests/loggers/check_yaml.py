#!/usr/bin/env python3
"""Compares Blixt's hparams.yaml writer with PyYAML's yaml.dump (what
Lightning 1.9 calls) on random nested dicts of awkward strings and numbers.

Usage: check_yaml.py PATH_TO_loggers_test_csv [N [SEED]]
Exit 0 = identical text for every dict, 1 = a difference, 77 = skipped (no yaml).
"""
import json
import random
import subprocess
import sys
import tempfile

try:
    import yaml
except Exception:  # noqa: BLE001 - any import failure means "no PyYAML here"
    print("yaml not importable: skipped")
    sys.exit(77)

PIECES = ["a", "b", "lr", " ", " ", "  ", ":", ": ", "#", " #", "-", "- ", "?", "'", '"', ",",
          "[", "]", "{", "}", "&", "*", "!", "|", ">", "%", "@", "`", "\n", "\t", "\u00e9",
          "\u4e2d", "yes", "No", "on", "null", "~", "1", "0x1f", "1.5", "1e5", "-3", ".inf",
          "2020-01-01", "<<", "=", "---", "...", "word", "longerword", "x" * 20, "/", "_", "."]


def rand_str(r):
    if r.random() < 0.1:  # long text with spaces (line folding past column 80)
        return " ".join(r.choice(["alpha", "beta", "gamma", "it's", "d", "x" * 12])
                        for _ in range(r.randint(10, 40)))
    return "".join(r.choice(PIECES) for _ in range(r.randint(0, 5)))


def rand_float(r):
    return r.choice([0.0, -0.0, 1.0, 0.5, 0.1, 1e-05, 1e16, 1.5e20, 123.456, -2.5e-8,
                     r.uniform(-1e6, 1e6), r.random() * 10 ** r.randint(-20, 20)])


def rand_value(r, depth):
    k = r.random()
    if depth < 3 and k < 0.12:
        return {rand_key(r): rand_value(r, depth + 1) for _ in range(r.randint(0, 4))}
    if depth < 3 and k < 0.24:
        return [rand_value(r, depth + 1) for _ in range(r.randint(0, 4))]
    if k < 0.5:
        return rand_str(r)
    if k < 0.65:
        return r.randint(-1000, 10 ** 12)
    if k < 0.85:
        return rand_float(r)
    if k < 0.95:
        return r.random() < 0.5
    return None


def rand_key(r):
    return rand_str(r).replace("\n", "") or "k"


def main():
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    r = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1234)
    cases = [{rand_key(r): rand_value(r, 0) for _ in range(r.randint(0, 8))} for _ in range(n)]
    cases = [c for c in cases
             if "NaN" not in json.dumps(c) and "Infinity" not in json.dumps(c)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fp:
        json.dump(cases, fp)
        path = fp.name
    out = subprocess.run([sys.argv[1], "--yaml", path], check=True, capture_output=True).stdout
    got = out.decode("utf-8").split("\x1e")[:-1]
    fails = 0
    for c, g in zip(cases, got):
        want = yaml.dump(c)
        if g != want:
            fails += 1
            if fails <= 5:
                print("MISMATCH for %r\n--- blixt\n%s--- PyYAML\n%s" % (c, g, want))
    if len(got) != len(cases):
        print("got %d dumps for %d cases" % (len(got), len(cases)))
        fails += 1
    print("check_yaml: %d of %d dicts differ" % (fails, len(cases)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
