"""scripts/plot_results.py on hand-made run folders: what it collects and the rows it prints."""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GSAU_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SOURCE, "scripts", "plot_results.py")


def write_csv(folder, valid_ndcg):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_seconds", "valid_ndcg@20"])
        for e, v in enumerate(valid_ndcg, start=1):
            w.writerow([e, 10.0, v])
    with open(os.path.join(folder, "command.txt"), "w") as f:
        f.write("gsau train ...\n")


def write_report(folder, best_epoch, test_recall20):
    test = {"recall@10": 0.1, "ndcg@10": 0.05, "recall@20": test_recall20, "ndcg@20": 0.06}
    with open(os.path.join(folder, "report.json"), "w") as f:
        json.dump({"epochs_run": 4, "best_epoch": best_epoch, "valid": {"ndcg@20": 0.07}, "test": test,
                   "seconds_per_epoch": 10.0}, f)


class PlotResultsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.runs = os.path.join(self.tmp.name, "runs")
        self.out = os.path.join(self.tmp.name, "out")

    def tearDown(self):
        self.tmp.cleanup()

    def table(self):
        done = subprocess.run([sys.executable, SCRIPT, "--runs", self.runs, "--out", self.out, "--no-plots"],
                              capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        return [line for line in done.stdout.splitlines() if line.startswith("| x ")]

    def test_a_run_started_again_does_not_keep_the_earlier_runs_report(self):
        write_csv(os.path.join(self.runs, "x"), [0.01, 0.02, 0.03, 0.025])
        write_report(os.path.join(self.runs, "x"), 3, 0.2350)
        self.assertIn("| finished |", self.table()[0])
        # Started again (--overwrite): one epoch so far, no report yet.
        shutil.rmtree(os.path.join(self.runs, "x"))
        write_csv(os.path.join(self.runs, "x"), [0.011])
        self.assertIn("**partial**", self.table()[0])
        self.assertFalse(os.path.exists(os.path.join(self.out, "x", "report.json")))
        # The session's runs/ is gone: the collected copy still says partial, not the old test figures.
        shutil.rmtree(self.runs)
        row = self.table()[0]
        self.assertIn("**partial**", row)
        self.assertNotIn("0.2350", row)

    def test_a_partial_runs_best_epoch_is_the_trainers(self):
        # Rounded to 4 decimals 0.05721 and 0.05719 tie; the trainer keeps the later one.
        write_csv(os.path.join(self.runs, "x"), [0.03, 0.05721, 0.04, 0.05719, 0.05])
        cells = [c.strip() for c in self.table()[0].split("|")]
        self.assertEqual(cells[3], "5")   # epochs so far
        self.assertEqual(cells[4], "4")   # best epoch
        self.assertEqual(cells[5], "0.0572")


if __name__ == "__main__":
    unittest.main()
