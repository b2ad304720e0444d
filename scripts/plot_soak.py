#!/usr/bin/env python3
"""Plot the reliability soak (R4): resident memory and consumer lag against time.

Usage: plot_soak.py SOAK_CSV OUT_PNG   (columns t_s, rss_kib, lag_messages, state_events and, when
present, rss_peak_kib (the peak of each sampling interval) and heap_allocated_bytes and
heap_free_bytes: the allocator's view of the same memory)
"""
import csv
import sys

from mpl_setup import pyplot

plt = pyplot("plot_soak.py")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    rows = list(csv.DictReader(open(sys.argv[1])))
    t = [float(r["t_s"]) for r in rows]
    fig, (a, b) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    if rows and "rss_peak_kib" in rows[0]:
        a.plot(t, [float(r["rss_peak_kib"]) / 1024 for r in rows], label="resident, peak of the interval")
    a.plot(t, [float(r["rss_kib"]) / 1024 for r in rows], label="resident (RSS) at the sample")
    if rows and "heap_allocated_bytes" in rows[0]:
        a.plot(t, [float(r["heap_allocated_bytes"]) / 2**20 for r in rows], label="heap allocated")
        a.plot(t, [float(r["heap_free_bytes"]) / 2**20 for r in rows], label="heap free (allocator)")
        a.legend(loc="lower right")
    a.set_ylabel("gsau run memory (MiB)")
    a.grid(alpha=0.3)
    b.plot(t, [float(r["lag_messages"]) for r in rows], color="tab:orange")
    b.set_ylabel("consumer lag (messages)")
    b.set_xlabel("seconds into the soak")
    b.grid(alpha=0.3)
    fig.suptitle("R4 soak: gsau run at a steady rate")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
