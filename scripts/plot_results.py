#!/usr/bin/env python3
"""Collect the reproduction runs into docs/results/ and print their summary table.

For each RUNS/<run>/ (default runs/), copies metrics.csv, report.json (when the run has
finished), command.txt and a curves.png (plot_training.py) to docs/results/<run>/, and prints
a markdown table: finished runs with their test metrics, running ones with their best
validation so far (clearly marked partial).

Usage: scripts/plot_results.py [--runs runs] [--out docs/results] [--no-plots]
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def best_epoch(epochs, decimals=4):
    """The trainer's choice: validation NDCG@20 rounded to `decimals`, the last of equals."""
    best, best_value = None, None
    for row in epochs:
        value = round(float(row["valid_ndcg@20"]), decimals)
        if best is None or value >= best_value:
            best, best_value = row, value
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    rows = []
    # Runs of this machine (RUNS) and runs collected before (OUT: a session's runs/ does not
    # outlive it), so that the table lists every run.
    def listed(d):
        return set(os.listdir(d)) if os.path.isdir(d) else set()
    for run in sorted(listed(args.runs) | listed(args.out)):
        if run.startswith("old-"):  # superseded runs kept for reference only
            continue
        dst = os.path.join(args.out, run)
        src = os.path.join(args.runs, run)
        live = os.path.isfile(os.path.join(src, "metrics.csv"))
        if not live:
            src = dst
        csv_path = os.path.join(src, "metrics.csv")
        if not os.path.isfile(csv_path) or not os.path.isfile(os.path.join(src, "command.txt")):
            continue
        if live:
            os.makedirs(dst, exist_ok=True)
            for name in ("metrics.csv", "report.json", "command.txt"):
                if os.path.isfile(os.path.join(src, name)):
                    shutil.copy(os.path.join(src, name), os.path.join(dst, name))
                elif os.path.isfile(os.path.join(dst, name)):
                    # An earlier run's (this one was started again): left beside the new CSV,
                    # it would stand for this run once RUNS is gone.
                    os.remove(os.path.join(dst, name))
        with open(csv_path, newline="") as f:
            epochs = list(csv.DictReader(f))
        if not epochs:
            continue
        if live and not args.no_plots:
            subprocess.run([sys.executable, os.path.join(HERE, "plot_training.py"), csv_path,
                            os.path.join(dst, "curves.png"), "--title", run], check=False)
        best = best_epoch(epochs)
        report_path = os.path.join(src, "report.json")
        train_s = sum(float(r["train_seconds"]) for r in epochs) / len(epochs)
        if os.path.isfile(report_path):
            rep = json.load(open(report_path))
            t = rep["test"]
            rows.append(f"| {run} | finished | {rep['epochs_run']} | {rep['best_epoch']} | "
                        f"{rep['valid']['ndcg@20']:.4f} | {t['recall@10']:.4f} | {t['ndcg@10']:.4f} | "
                        f"{t['recall@20']:.4f} | {t['ndcg@20']:.4f} | {rep['seconds_per_epoch']:.0f} |")
        else:
            rows.append(f"| {run} | **partial** (unfinished) | {epochs[-1]['epoch']} | {best['epoch']} | "
                        f"{float(best['valid_ndcg@20']):.4f} | - | - | - | - | {train_s:.0f} |")
    print("| run | state | epochs | best epoch | valid NDCG@20 | test R@10 | test N@10 | test R@20 | "
          "test N@20 | s/epoch (train) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
