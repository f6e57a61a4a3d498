#!/usr/bin/env python3
"""Replays the metrics.csv of every conformance trace through Blixt's CSVLogger.

Usage: check_traces_csv.py PATH_TO_loggers_test_csv TRACES_DIR
For each trace's csv section (Lightning 1.9.5's metrics.csv as cell strings),
every row is logged as one record (its non-empty cells; ints where the cell
is an int) and the file Blixt writes must equal the trace's header + rows
byte for byte (csv QUOTE_MINIMAL, "\\r\\n"): this pins header order, the
sparse rows and Python's str(float)/str(int) text of each cell.
Exit 0 = all equal, 1 = a difference, 77 = skipped (no traces folder).
"""
import csv
import glob
import io
import json
import os
import subprocess
import sys
import tempfile


def csv_sections(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "csv" and isinstance(v, dict):
                yield v
            else:
                yield from csv_sections(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from csv_sections(v)


def main():
    exe, traces = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(traces, "*.json")))
    if not files:
        print("no traces in %s: skipped" % traces)
        return 77
    checked = fails = 0
    for path in files:
        with open(path) as fp:
            trace = json.load(fp)
        for sec in csv_sections(trace):
            if sec.get("missing") or not sec.get("rows"):
                continue
            buf = io.StringIO(newline="")
            w = csv.writer(buf)
            w.writerow(sec["header"])
            w.writerows(sec["rows"])
            want = buf.getvalue()
            with tempfile.TemporaryDirectory() as d:
                spec = os.path.join(d, "rows.json")
                with open(spec, "w") as fp:
                    json.dump({"header": sec["header"], "rows": sec["rows"]}, fp)
                out = subprocess.run([exe, "--rows", spec, os.path.join(d, "run")],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    print("FAIL %s: %s" % (os.path.basename(path), out.stderr.strip()))
                    fails += 1
                    continue
                with open(out.stdout.strip().splitlines()[-1], newline="") as fp:
                    got = fp.read()
            checked += 1
            if got != want:
                fails += 1
                print("FAIL %s %s\n--- blixt\n%s--- trace\n%s" % (os.path.basename(path),
                                                                sec["path"], got, want))
    print("check_traces_csv: %d csv files, %d differ" % (checked, fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
