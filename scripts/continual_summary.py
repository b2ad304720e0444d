#!/usr/bin/env python3
"""Summarise the continual-quality experiment (issue 6): runs (a), (b), (c) side by side.

(a) is `gsau evaluate`'s JSON of the continually trained model, (b) and (c) `gsau train`'s
report.json of the offline runs on the first part and on all of the training stream. Writes
OUT/summary.json and OUT/summary.md (test Recall/NDCG @10 and @20 and the two targets:
(a) > (b), and (a) >= 0.95 x (c) on test Recall@20 and NDCG@20), and OUT/prequential.png from
the pipeline's prequential CSV (online Recall@20 per window next to the most-popular baseline).
Prints the markdown table. Exit status 0 whether or not the targets hold (they are reported).

Usage: continual_summary.py --a A.json --b B/report.json --c C/report.json
                            [--prequential P.csv] --out DIR [--note TEXT]
"""
import argparse
import csv
import json
import os
import sys

from mpl_setup import pyplot

KEYS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]


def load(path):
    with open(path) as f:
        return json.load(f)


def plot(csv_path, png_path):
    plt = pyplot("continual_summary.py", required=False)
    if plt is None:
        return

    rows = list(csv.DictReader(open(csv_path)))
    rows = [r for r in rows if int(r["window_count"]) > 0]
    if not rows:
        print("continual_summary.py: the prequential CSV has no window with clicks", file=sys.stderr)
        return
    t0 = int(rows[0]["time_ms"])
    x = [(int(r["time_ms"]) - t0) / 1000.0 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(x, [float(r["window_recall@20"]) for r in rows], label="GSAU online, window Recall@20")
    ax.plot(x, [float(r["window_popular_recall@20"]) for r in rows], label="most popular, window Recall@20")
    ax.plot(x, [float(r["total_recall@20"]) for r in rows], "--", label="GSAU online, cumulative Recall@20")
    ax.set_xlabel("seconds since the first ranked click")
    ax.set_ylabel("prequential Recall@20 (rank, then train)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Continual run (a): prequential Recall@20 while the rest of Beauty streams")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--c", required=True)
    ap.add_argument("--prequential")
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    runs = {"a": load(args.a), "b": load(args.b), "c": load(args.c)}
    test = {k: {m: float(v["test"][m]) for m in KEYS} for k, v in runs.items()}
    checks = {}
    for m in ("recall@20", "ndcg@20"):
        checks[f"a > b on {m}"] = test["a"][m] > test["b"][m]
        checks[f"a >= 0.95 c on {m}"] = test["a"][m] >= 0.95 * test["c"][m]
    names = {
        "a": "(a) gsau run from (b), the rest streamed",
        "b": "(b) offline, first part of the stream",
        "c": "(c) offline, the whole stream",
    }
    lines = ["| run | " + " | ".join(f"test {m}" for m in KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for k in "abc":
        lines.append(f"| {names[k]} | " + " | ".join(f"{test[k][m]:.4f}" for m in KEYS) + " |")
    lines.append("")
    for name, ok in checks.items():
        lines.append(f"- {name}: {'met' if ok else 'NOT met'}")
    lines.append(f"- (a) / (c): Recall@20 {test['a']['recall@20'] / test['c']['recall@20']:.3f}, "
                 f"NDCG@20 {test['a']['ndcg@20'] / test['c']['ndcg@20']:.3f}")
    if args.note:
        lines.append(f"- {args.note}")
    md = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"test": test, "checks": checks, "note": args.note,
                   "sources": {"a": args.a, "b": args.b, "c": args.c}}, f, indent=2)
    print(md, end="")
    if args.prequential:
        plot(args.prequential, os.path.join(args.out, "prequential.png"))


if __name__ == "__main__":
    main()
