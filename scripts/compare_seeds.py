#!/usr/bin/env python3
"""Several seeds of one `gsau train` configuration against the authors' run of it.

Reads each run folder's metrics.csv and report.json and the authors' run
as transcribed in docs/results/authors/ (NAME.csv: their log's per-epoch train loss sum and
validation metrics, epochs 0-based; NAME.json: steps per epoch, best epoch, test metrics).
Writes, under OUT:
  seeds.md    the test metrics of every seed, their mean and sample sd, the 95% prediction
              interval for one more seed (mean +- t * sd * sqrt(1 + 1/n)), and where the authors'
              figure falls; then the training loss and validation NDCG@20 of every seed beside the
              authors' at a few epochs, and how often the authors' curve lies within the seeds'
  curves.csv  epoch, the authors' mean step loss and validation NDCG@20 / Recall@20, each seed's
  curves.png  the same curves, and each seed's loss minus the authors'
A run without report.json (unfinished) adds its curves to the per-epoch table, curves.csv and
curves.png only. Prints seeds.md. Nothing here decides a target: it reports.
--variants: the runs differ in more than their seed (two orders of the same data, say): each is
set beside the authors' on its own, with no mean, sd, interval or count of epochs inside a spread.

Usage: compare_seeds.py --authors docs/results/authors/toys-gsau-rec --out DIR [--variants] RUN_DIR[=LABEL]...
"""
import argparse
import csv
import json
import math
import os

from mpl_setup import pyplot

# Two-sided 95% quantiles of Student's t by degrees of freedom (1..30, 40, 60, 120).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
       20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
       29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(df):
    """The two-sided 95% quantile of Student's t with `df` degrees of freedom: exact to 3 decimals
    up to 30, then the next tabulated df at or below (slightly wide), 1.960 beyond 120."""
    if df > max(T95):
        return 1.960
    return T95[max(k for k in T95 if k <= df)]
TEST_KEYS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]
CHECK_EPOCHS = [1, 5, 10, 20, 40, 60, 80, 100, 120, 140, 160]


def mean_sd(values):
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return m, sd


def load_authors(prefix):
    with open(prefix + ".json") as f:
        meta = json.load(f)
    steps = float(meta["steps_per_epoch"])
    curve = {}
    with open(prefix + ".csv", newline="") as f:
        for r in csv.DictReader(f):
            curve[int(r["epoch"]) + 1] = {  # their log counts from 0, ours from 1
                "loss": float(r["train_loss_sum"]) / steps,
                "ndcg@20": float(r["valid_ndcg@20"]),
                "recall@20": float(r["valid_recall@20"]),
            }
    return meta, curve


def load_run(folder):
    """(report or None when unfinished, curve)"""
    curve = {}
    with open(os.path.join(folder, "metrics.csv"), newline="") as f:
        for r in csv.DictReader(f):
            curve[int(r["epoch"])] = {
                "loss": float(r["loss"]),
                "ndcg@20": float(r["valid_ndcg@20"]),
                "recall@20": float(r["valid_recall@20"]),
            }
    report_path = os.path.join(folder, "report.json")
    if not os.path.isfile(report_path):
        return None, curve
    with open(report_path) as f:
        return json.load(f), curve


def seed_of(folder, report):
    if report is not None:
        return str(report["config"]["seed"])
    command = os.path.join(folder, "command.txt")
    if os.path.isfile(command):
        words = open(command).read().split()
        if "--seed" in words and words.index("--seed") + 1 < len(words):
            return words[words.index("--seed") + 1]
    return "?"


def summary(meta, authors, runs, unfinished, variants=False):
    names = [name for name, _, _ in runs]
    n = len(runs)
    out = [f"{'Runs' if variants else 'Seeds'}: {', '.join(names)} ({n} finished runs) against the authors' run "
           f"(`{meta['source']}`, seed {meta['seed']}).", ""]
    if variants:
        out += ["| test | " + " | ".join(names) + " | authors |", "|---|" + "---|" * (n + 1)]
        out += [f"| {key} | " + " | ".join(f"{rep['test'][key]:.4f}" for _, rep, _ in runs) +
                f" | {meta['test'][key]:.4f} |" for key in TEST_KEYS]
    else:
        out += ["| test | " + " | ".join(names) + " | mean | sd | 95% prediction interval | authors | authors' z |",
                "|---|" + "---|" * (n + 5)]
        for key in TEST_KEYS:
            values = [rep["test"][key] for _, rep, _ in runs]
            m, sd = mean_sd(values)
            theirs = meta["test"][key]
            if n >= 2:
                half = t95(n - 1) * sd * math.sqrt(1 + 1 / n)
                interval = f"{m - half:.4f} .. {m + half:.4f}"
                z = f"{(theirs - m) / sd:+.2f}" if sd > 1e-12 else "-"  # equal values: rounding, not spread
            else:
                interval, z = "-", "-"
            out.append(f"| {key} | " + " | ".join(f"{v:.4f}" for v in values) +
                       f" | {m:.4f} | {sd:.4f} | {interval} | {theirs:.4f} | {z} |")
    out.append("")
    out.append("| | " + " | ".join(names) + " | authors |")
    out.append("|---|" + "---|" * (n + 1))
    out.append("| best epoch (stop) | " + " | ".join(
        f"{rep['best_epoch']} ({rep['epochs_run']})" for _, rep, _ in runs) +
        f" | {meta['best_epoch'] + 1} ({meta['epochs_run']}) |")
    out.append("| best valid NDCG@20 | " + " | ".join(f"{rep['valid']['ndcg@20']:.4f}" for _, rep, _ in runs) +
               f" | {meta['valid']['ndcg@20']:.4f} |")
    out.append("")
    out.append("Per epoch (epochs counted from 1; loss = mean per step), loss / validation NDCG@20:")
    out.append("")
    curves = runs + unfinished
    out.append("| epoch | " + " | ".join(name for name, _, _ in curves) + " | authors |")
    out.append("|---|" + "---|" * (len(curves) + 1))
    for e in CHECK_EPOCHS:
        if e not in authors:
            continue
        cells = [f"{c[e]['loss']:.4f} / {c[e]['ndcg@20']:.4f}" if e in c else "-" for _, _, c in curves]
        out.append(f"| {e} | " + " | ".join(cells) + f" | {authors[e]['loss']:.4f} / {authors[e]['ndcg@20']:.4f} |")
    # Over the epochs every seed and the authors ran: is their curve inside the seeds' spread?
    common = [e for e in sorted(authors) if all(e in c for _, _, c in runs)]
    if common and n >= 2 and not variants:
        out.append("")
        for key in ("loss", "ndcg@20"):
            lo = sum(1 for e in common if authors[e][key] < min(c[e][key] for _, _, c in runs))
            hi = sum(1 for e in common if authors[e][key] > max(c[e][key] for _, _, c in runs))
            diff = sum(authors[e][key] - sum(c[e][key] for _, _, c in runs) / n for e in common) / len(common)
            out.append(f"- {key}, epochs 1-{common[-1]} (all ran them): the authors' value is below every seed's at "
                       f"{lo}, above every seed's at {hi}, within their range at {len(common) - lo - hi} epochs "
                       f"(one more run like the seeds falls outside {n} runs' range with probability "
                       f"2/{n + 1} = {2 / (n + 1):.2f}); authors minus the seeds' mean, averaged: {diff:+.5f}")
    return "\n".join(out) + "\n"


def write_curves(path, authors, runs):
    names = [name for name, _, _ in runs]
    epochs = sorted(set(authors) | {e for _, _, c in runs for e in c})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        header = ["epoch", "authors_loss", "authors_valid_ndcg@20", "authors_valid_recall@20"]
        for name in names:
            header += [f"{name}_loss", f"{name}_valid_ndcg@20", f"{name}_valid_recall@20"]
        w.writerow(header)
        for e in epochs:
            row = [e]
            for c in [authors] + [c for _, _, c in runs]:
                row += [c[e]["loss"], c[e]["ndcg@20"], c[e]["recall@20"]] if e in c else ["", "", ""]
            w.writerow(row)


def plot(plt, path, title, authors, runs):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    xs_authors = sorted(authors)
    for ax, key, label in ((axes[0], "loss", "training loss (mean per step)"),
                           (axes[1], "ndcg@20", "validation NDCG@20")):
        for name, _, c in runs:
            xs = sorted(c)
            ax.plot(xs, [c[e][key] for e in xs], linewidth=1, label=name)
        ax.plot(xs_authors, [authors[e][key] for e in xs_authors], "k--", linewidth=1.5, label="authors")
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.legend()
    # The curves overlap at this scale: the differences show what the eye cannot.
    for name, _, c in runs:
        xs = [e for e in xs_authors if e in c]
        axes[2].plot(xs, [c[e]["loss"] - authors[e]["loss"] for e in xs], linewidth=1, label=name)
    axes[2].axhline(0.0, color="k", linestyle="--", linewidth=1)
    axes[2].set_xlabel("epoch")
    axes[2].set_title("training loss: run minus authors")
    axes[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--authors", required=True, help="path prefix of the authors' NAME.csv and NAME.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--title", default=None, help="of the plot (default: OUT's name)")
    ap.add_argument("--variants", action="store_true",
                    help="the runs are not seeds of one configuration: no statistics across them")
    ap.add_argument("runs", nargs="+", help="run folders holding metrics.csv (and report.json once finished), "
                    "each optionally =LABEL")
    args = ap.parse_args()
    # Before any output: pyplot() may start this script again under another interpreter.
    plt = None if args.no_plot else pyplot("compare_seeds.py", required=False)
    meta, authors = load_authors(args.authors)
    runs, unfinished = [], []
    for arg in args.runs:
        folder, _, label = arg.partition("=")
        report, curve = load_run(folder)
        name = label or f"seed {seed_of(folder, report)}" + ("" if report else f", unfinished ({len(curve)} epochs)")
        if report is None:
            print(f"compare_seeds.py: {folder}: no report.json (unfinished): its curves only")
            unfinished.append((name, None, curve))
        else:
            runs.append((name, report, curve))
    if not runs:
        raise SystemExit("compare_seeds.py: no finished run")
    os.makedirs(args.out, exist_ok=True)
    text = summary(meta, authors, runs, unfinished, args.variants)
    with open(os.path.join(args.out, "seeds.md"), "w") as f:
        f.write(text)
    write_curves(os.path.join(args.out, "curves.csv"), authors, runs + unfinished)
    if plt is not None:
        plot(plt, os.path.join(args.out, "curves.png"), args.title or os.path.basename(os.path.normpath(args.out)),
             authors, runs + unfinished)
    print(text, end="")


if __name__ == "__main__":
    main()
