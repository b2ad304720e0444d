#!/usr/bin/env python3
"""Plot a `gsau train` metrics.csv: training loss terms and validation metrics per epoch.

Usage: plot_training.py METRICS_CSV OUT_PNG [--title TITLE]
"""
import argparse
import csv

from mpl_setup import pyplot

plt = pyplot("plot_training.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("csv")
    ap.add_argument("png")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{args.csv}: no epochs yet")
    epochs = [int(r["epoch"]) for r in rows]
    col = lambda name: [float(r[name]) for r in rows]  # noqa: E731
    fig, (ax_loss, ax_valid) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in ("loss", "graph_align", "graph_unif", "seq_align", "seq_unif"):
        values = col(name)
        if any(v != 0 for v in values):
            ax_loss.plot(epochs, values, label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("training loss (step means)")
    ax_loss.legend()
    for name in ("valid_recall@10", "valid_recall@20", "valid_ndcg@10", "valid_ndcg@20"):
        ax_valid.plot(epochs, col(name), label=name.replace("valid_", ""))
    ax_valid.set_xlabel("epoch")
    ax_valid.set_title("validation (full ranking)")
    ax_valid.legend()
    fig.suptitle(args.title or args.csv)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
