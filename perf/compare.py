#!/usr/bin/env python3
"""Instruction-count regression gate for benches/hot_paths.rs.

Runs the iai-callgrind benchmarks (unless --no-run), reads the instruction
count (callgrind's Ir) of every benchmark, and compares it with the baseline in
perf/hot_paths.txt. Fails (exit 1) if a benchmark costs more than TOLERANCE
above its baseline, if a baselined benchmark did not run, or if a benchmark has
no baseline. Counts that fell by more than the tolerance are reported so the
baseline can be lowered; they do not fail.

    perf/compare.py            run, compare, print a table
    perf/compare.py --update   run and rewrite perf/hot_paths.txt (commit it
                               deliberately, saying why the counts moved)
    perf/compare.py --no-run   compare the summaries of the last run

Needs valgrind and iai-callgrind-runner of the version in Cargo.lock.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Allowed growth of a benchmark's instruction count over its baseline, in
# percent. Counts repeat exactly for one binary on one machine; the margin
# absorbs differences between machines of the same kind (CPU features seen
# through valgrind, libc's choice of memcpy) and is well below the cost of a
# real change to a hot path (one more copy of an envelope per message is 5-15%).
TOLERANCE = 3.0

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "perf" / "hot_paths.txt"
BENCH = "hot_paths"


def target_dir():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return Path(json.loads(out)["target_directory"])


def summaries_dir():
    return target_dir() / "iai" / "wasmshard" / BENCH


def run_benches():
    # A benchmark that no longer exists must not answer from an old summary.
    shutil.rmtree(summaries_dir(), ignore_errors=True)
    env = dict(os.environ)
    # Summaries as JSON, one per benchmark, beside callgrind's output files.
    env["IAI_CALLGRIND_SAVE_SUMMARY"] = "json"
    cmd = ["cargo", "bench", "--locked", "--bench", BENCH]
    print("perf: " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def ops_of():
    """The operations a benchmark does, from the OPS constant in the bench file."""
    src = (ROOT / "benches" / f"{BENCH}.rs").read_text()
    for line in src.splitlines():
        if line.startswith("const OPS: u32 ="):
            return int(line.split("=")[1].strip().rstrip(";"))
    sys.exit("perf: benches/hot_paths.rs has no `const OPS: u32 = N;`")


def total_ir(summary, path):
    """Callgrind's instruction count over every thread of one benchmark run."""
    for profile in summary.get("profiles", []):
        if profile.get("tool") != "Callgrind":
            continue
        metrics = profile["summaries"]["total"]["summary"]["Callgrind"]["Ir"]["metrics"]
        # `Left` alone after a fresh run; `Both` (new, old) when an older run was kept.
        value = metrics["Left"] if "Left" in metrics else metrics["Both"][0]
        return int(value["Int"])
    sys.exit(f"perf: no callgrind counts in {path}")


def read_summaries():
    base = summaries_dir()
    results = {}
    for path in sorted(base.rglob("summary.json")):
        summary = json.loads(path.read_text())
        # module_path is `hot_paths::group::function`; the id names the case.
        name = summary["module_path"].split("::", 1)[1]
        if summary.get("id"):
            name += "::" + summary["id"]
        results[name] = total_ir(summary, path)
    if not results:
        sys.exit(f"perf: no summaries under {base}; did the benchmarks run?")
    return results


def read_baseline():
    baseline = {}
    for line in BASELINE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, total = line.split()[0], line.split()[-1]
        baseline[name] = int(total.replace(",", ""))
    return baseline


def write_baseline(results, ops):
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
    ).stdout.strip() or "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.strip()
    if dirty:
        commit += " plus the changes committed with this file"
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    width = max(len(n) for n in results)
    lines = [
        "# Instruction counts (callgrind Ir) of benches/hot_paths.rs: the baseline",
        "# perf/compare.py checks against (tolerance: +%.1f%% per benchmark)." % TOLERANCE,
        "# Each benchmark does %d operations; Ir/op is the total over %d." % (ops, ops),
        "# Update only with `perf/compare.py --update`, in a commit that says why.",
        "# measured at %s; %s; %s" % (commit, rustc, valgrind),
        "#",
        "# %-*s %10s %12s" % (width - 2, "benchmark", "Ir/op", "Ir"),
    ]
    for name in sorted(results):
        lines.append("%-*s %10.1f %12d" % (width, name, results[name] / ops, results[name]))
    BASELINE.write_text("\n".join(lines) + "\n")
    print(f"perf: wrote {BASELINE.relative_to(ROOT)}")


def compare(results, baseline, ops):
    failed = False
    width = max(len(n) for n in list(results) + list(baseline))
    print("%-*s %10s %10s %8s  %s" % (width, "benchmark", "base/op", "now/op", "change", "verdict"))
    for name in sorted(set(results) | set(baseline)):
        now, base = results.get(name), baseline.get(name)
        if base is None:
            print("%-*s %10s %10.1f %8s  no baseline (run --update)" % (width, name, "-", now / ops, "-"))
            failed = True
            continue
        if now is None:
            print("%-*s %10.1f %10s %8s  did not run" % (width, name, base / ops, "-", "-"))
            failed = True
            continue
        change = (now - base) * 100.0 / base
        if change > TOLERANCE:
            verdict = "REGRESSION (over +%.1f%%)" % TOLERANCE
            failed = True
        elif change < -TOLERANCE:
            verdict = "faster: lower the baseline (--update)"
        else:
            verdict = "ok"
        print("%-*s %10.1f %10.1f %+7.2f%%  %s" % (width, name, base / ops, now / ops, change, verdict))
    return not failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the baseline")
    parser.add_argument("--no-run", action="store_true", help="use the last run's summaries")
    args = parser.parse_args()
    if not args.no_run:
        run_benches()
    results = read_summaries()
    ops = ops_of()
    if args.update:
        write_baseline(results, ops)
        return 0
    if not BASELINE.exists():
        sys.exit(f"perf: no baseline at {BASELINE}; create it with --update")
    if compare(results, read_baseline(), ops):
        print("perf: no benchmark over its baseline by more than %.1f%%" % TOLERANCE)
        return 0
    print("perf: instruction counts regressed (see above); if intended, update the "
          "baseline with perf/compare.py --update in a commit that says why")
    return 1


if __name__ == "__main__":
    sys.exit(main())
