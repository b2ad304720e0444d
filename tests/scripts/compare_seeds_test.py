"""scripts/compare_seeds.py on small hand-made runs whose summary is computed by hand below."""
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GSAU_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SOURCE, "scripts", "compare_seeds.py")
KEYS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]


def write_run(folder, seed, test_recall20, curve, finished=True):
    """curve: {epoch (1-based): (loss, valid ndcg@20)}"""
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "loss", "valid_recall@20", "valid_ndcg@20"])
        for e, (loss, ndcg) in sorted(curve.items()):
            w.writerow([e, loss, 2 * ndcg, ndcg])
    if finished:
        test = {k: 0.05 for k in KEYS}
        test["recall@20"] = test_recall20
        report = {"config": {"seed": seed}, "test": test, "valid": {"ndcg@20": 0.07},
                  "best_epoch": 2, "epochs_run": 3}
        with open(os.path.join(folder, "report.json"), "w") as f:
            json.dump(report, f)


class CompareSeedsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        # The authors' log counts epochs from 0 and sums the loss over the epoch's steps (4 here).
        authors = os.path.join(self.root, "authors")
        with open(authors + ".csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "train_loss_sum", "valid_recall@20", "valid_ndcg@20"])
            w.writerow([0, 4 * 9.0, 0.02, 0.01])  # our epoch 1: loss 9.0, above every seed
            w.writerow([1, 4 * 7.5, 0.04, 0.02])  # epoch 2: 7.5, within
            w.writerow([2, 4 * 5.0, 0.06, 0.03])  # epoch 3: 5.0, below every seed
        test = {k: 0.05 for k in KEYS}
        test["recall@20"] = 0.13
        with open(authors + ".json", "w") as f:
            json.dump({"source": "test", "seed": 1, "steps_per_epoch": 4, "epochs_run": 3, "best_epoch": 1,
                       "valid": {"ndcg@20": 0.03}, "test": test}, f)
        self.authors = authors
        self.runs = []
        for k, (seed, recall) in enumerate(((1, 0.10), (2, 0.12), (3, 0.14))):
            folder = os.path.join(self.root, f"run{seed}")
            write_run(folder, seed, recall, {1: (8.0 + 0.1 * k, 0.010), 2: (7.0 + 0.5 * k, 0.020),
                                             3: (6.0 + 0.1 * k, 0.030)})
            self.runs.append(folder)
        self.unfinished = os.path.join(self.root, "run9")
        write_run(self.unfinished, 9, 0.5, {1: (1.0, 0.5)}, finished=False)
        with open(os.path.join(self.unfinished, "command.txt"), "w") as f:
            f.write("gsau train --data x --seed 9 --out run9\n")
        self.out = os.path.join(self.root, "out")

    def tearDown(self):
        self.tmp.cleanup()

    def run_script(self, *extra):
        return subprocess.run([sys.executable, SCRIPT, "--authors", self.authors, "--out", self.out, *extra,
                               *self.runs, self.unfinished],
                              check=True, capture_output=True, text=True).stdout

    def test_summary_by_hand(self):
        stdout = self.run_script("--no-plot")
        with open(os.path.join(self.out, "seeds.md")) as f:
            md = f.read()
        self.assertIn(md, stdout)
        self.assertIn("run9: no report.json (unfinished): its curves only", stdout)
        self.assertIn("(3 finished runs)", md)
        # The unfinished run: a column of the per-epoch table, in no statistic.
        self.assertIn("| epoch | seed 1 | seed 2 | seed 3 | seed 9, unfinished (1 epochs) | authors |", md)
        self.assertIn("| 1 | 8.0000 / 0.0100 | 8.1000 / 0.0100 | 8.2000 / 0.0100 | 1.0000 / 0.5000 | 9.0000 / 0.0100 |", md)
        # recall@20: 0.10, 0.12, 0.14 -> mean 0.12, sample sd 0.02; prediction interval
        # 0.12 +- 4.303 * 0.02 * sqrt(4/3) = 0.12 +- 0.09937; the authors' 0.13 is (0.13-0.12)/0.02 = +0.5 sd.
        self.assertIn("| recall@20 | 0.1000 | 0.1200 | 0.1400 | 0.1200 | 0.0200 | 0.0206 .. 0.2194 | 0.1300 | +0.50 |",
                      md)
        # Equal values: sd 0, no z.
        self.assertIn("| ndcg@20 | 0.0500 | 0.0500 | 0.0500 | 0.0500 | 0.0000 | 0.0500 .. 0.0500 | 0.0500 | - |", md)
        # Loss: above every seed at epoch 1, within at 2, below at 3; mean difference
        # ((9.0-8.1) + (7.5-7.5) + (5.0-6.1)) / 3 = -0.06667.
        self.assertIn("- loss, epochs 1-3 (all ran them): the authors' value is below every seed's at 1, above every "
                      "seed's at 1, within their range at 1 epochs", md)
        self.assertIn("averaged: -0.06667", md)
        self.assertIn("2/4 = 0.50", md)

    def test_curves_csv_aligns_epochs(self):
        self.run_script("--no-plot")
        with open(os.path.join(self.out, "curves.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([r["epoch"] for r in rows], ["1", "2", "3"])
        self.assertAlmostEqual(float(rows[0]["authors_loss"]), 9.0)
        self.assertAlmostEqual(float(rows[2]["authors_valid_ndcg@20"]), 0.03)
        self.assertAlmostEqual(float(rows[1]["seed 3_loss"]), 8.0)
        self.assertAlmostEqual(float(rows[0]["seed 9, unfinished (1 epochs)_loss"]), 1.0)
        self.assertEqual(rows[1]["seed 9, unfinished (1 epochs)_loss"], "")

    def test_labels(self):
        subprocess.run([sys.executable, SCRIPT, "--authors", self.authors, "--out", self.out, "--no-plot",
                        self.runs[0] + "=first", self.runs[1], self.runs[2], self.unfinished + "=check"],
                       check=True, capture_output=True)
        with open(os.path.join(self.out, "seeds.md")) as f:
            md = f.read()
        self.assertIn("| epoch | first | seed 2 | seed 3 | check | authors |", md)

    def test_variants_have_no_statistics_across_them(self):
        self.run_script("--no-plot", "--variants")
        with open(os.path.join(self.out, "seeds.md")) as f:
            md = f.read()
        self.assertIn("Runs: seed 1, seed 2, seed 3 (3 finished runs)", md)
        self.assertIn("| test | seed 1 | seed 2 | seed 3 | authors |", md)
        self.assertIn("| recall@20 | 0.1000 | 0.1200 | 0.1400 | 0.1300 |", md)
        self.assertNotIn("| mean | sd |", md)
        self.assertNotIn("prediction interval", md)
        self.assertNotIn("within their range", md)
        # The per-epoch table stays.
        self.assertIn("| 1 | 8.0000 / 0.0100 | 8.1000 / 0.0100 | 8.2000 / 0.0100 | 1.0000 / 0.5000 | 9.0000 / 0.0100 |", md)

    def test_plot(self):
        # Runs under whichever python3 has matplotlib (mpl_setup re-executes under Debian's).
        self.run_script("--title", "t")
        with open(os.path.join(self.out, "curves.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_no_finished_run_is_an_error(self):
        r = subprocess.run([sys.executable, SCRIPT, "--authors", self.authors, "--out", self.out, self.unfinished],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no finished run", r.stderr)


class StudentTTest(unittest.TestCase):
    def test_quantiles_follow_the_degrees_of_freedom_past_ten(self):
        sys.path.insert(0, os.path.join(SOURCE, "scripts"))
        try:
            import compare_seeds
        finally:
            sys.path.pop(0)
        # Every df above 10 was given 10's quantile (2.228): 12 seeds' interval 1% too wide, 21 seeds' 6%.
        self.assertEqual(compare_seeds.t95(4), 2.776)
        self.assertEqual(compare_seeds.t95(11), 2.201)
        self.assertEqual(compare_seeds.t95(20), 2.086)
        self.assertEqual(compare_seeds.t95(35), 2.042)   # the tabulated df below: a little wide
        self.assertEqual(compare_seeds.t95(500), 1.960)


if __name__ == "__main__":
    unittest.main()
