#!/usr/bin/env python3
"""Re-order each user's same-timestamp interactions by item id, in a per-user items file and
its aligned times file (the Beauty format of ../shared/datasets/amazon-beauty).

Why: the Amazon timestamps are days, so most users have ties, and the files here broke them
with an unstable sort (amazon-beauty/PROVENANCE.md): arbitrary. RecBole sorts by time with a
stable sort and so keeps its atomic file's order for ties. The item ids here were given by
first appearance in the item-grouped review file, so ordering ties by id puts them back in that
file's order, which is what the authors' RecBole runs trained and were tested on (for which
docs/results/README.md, "Same-day ties", has the evidence). Nothing else changes: the same
interactions, the same times, users in the same order.

Usage: order_ties.py ITEMS TIMES OUT_DIR
Writes OUT_DIR/<basename of ITEMS> and OUT_DIR/<basename of TIMES>; prints how many users'
order, validation item (second to last) and test item (last) changed.
"""
import argparse
import os
import sys


def read_lines(path):
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("items")
    ap.add_argument("times")
    ap.add_argument("out_dir")
    args = ap.parse_args()
    items = read_lines(args.items)
    times = read_lines(args.times)
    if len(items) != len(times):
        sys.exit(f"{args.items} has {len(items)} users, {args.times} {len(times)}: not aligned")
    out_items = os.path.join(args.out_dir, os.path.basename(args.items))
    out_times = os.path.join(args.out_dir, os.path.basename(args.times))
    if os.path.abspath(out_items) == os.path.abspath(args.items):
        sys.exit("OUT_DIR must not be the input's folder")
    changed = valid_changed = test_changed = 0
    users = []
    for line_no, (iu, tu) in enumerate(zip(items, times), start=1):
        if iu[0] != tu[0] or len(iu) != len(tu):
            sys.exit(f"line {line_no}: user {iu[0]} ({len(iu) - 1} items) and user {tu[0]} "
                     f"({len(tu) - 1} times) are not aligned")
        seq = [(int(t), int(i)) for i, t in zip(iu[1:], tu[1:])]
        if any(a[0] > b[0] for a, b in zip(seq, seq[1:])):
            sys.exit(f"line {line_no}: user {iu[0]}'s times are not in ascending order")
        ordered = sorted(seq)  # time, then item id
        changed += ordered != seq
        valid_changed += len(seq) >= 2 and ordered[-2][1] != seq[-2][1]
        test_changed += ordered[-1][1] != seq[-1][1]
        users.append((iu[0], ordered))
    # Written only once every line has passed, each under a temporary name renamed into place: a
    # refused input leaves nothing half-written, and a reader of an earlier copy never sees one.
    os.makedirs(args.out_dir, exist_ok=True)
    with open(out_items + ".tmp", "w") as fi, open(out_times + ".tmp", "w") as ft:
        for user, ordered in users:
            fi.write(user + " " + " ".join(str(i) for _, i in ordered) + "\n")
            ft.write(user + " " + " ".join(str(t) for t, _ in ordered) + "\n")
    os.replace(out_items + ".tmp", out_items)
    os.replace(out_times + ".tmp", out_times)
    print(f"users {len(items)}: order changed {changed}, validation item changed {valid_changed}, "
          f"test item changed {test_changed}; wrote {out_items} and {out_times}")


if __name__ == "__main__":
    main()
