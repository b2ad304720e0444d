"""scripts/continual_summary.py: the issue's two targets, (a) > (b) and (a) >= 0.95 (c) on test
Recall@20 and NDCG@20, decided on hand-picked figures, boundaries included."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GSAU_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SOURCE, "scripts", "continual_summary.py")


class ContinualSummaryTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def summarise(self, a, b, c):
        paths = {}
        for name, (recall20, ndcg20) in {"a": a, "b": b, "c": c}.items():
            paths[name] = os.path.join(self.root, f"{name}.json")
            with open(paths[name], "w") as f:
                # evaluate's JSON and train's report.json both keep the test metrics under "test".
                json.dump({"test": {"recall@10": recall20 / 2, "ndcg@10": ndcg20 / 2, "recall@20": recall20,
                                    "ndcg@20": ndcg20}}, f)
        out = os.path.join(self.root, "out")
        proc = subprocess.run([sys.executable, SCRIPT, "--a", paths["a"], "--b", paths["b"], "--c", paths["c"],
                               "--out", out], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            return json.load(f)["checks"], proc.stdout

    def test_targets_met(self):
        checks, md = self.summarise(a=(0.12, 0.05), b=(0.11, 0.049), c=(0.125, 0.052))
        self.assertEqual(checks, {"a > b on recall@20": True, "a >= 0.95 c on recall@20": True,
                                  "a > b on ndcg@20": True, "a >= 0.95 c on ndcg@20": True})
        self.assertIn("| (a) gsau run from (b), the rest streamed | 0.0600 | 0.0250 | 0.1200 | 0.0500 |", md)
        self.assertIn("(a) / (c): Recall@20 0.960, NDCG@20 0.962", md)

    def test_a_tie_with_b_is_not_above_it_and_under_95_percent_of_c_is_not_met(self):
        checks, md = self.summarise(a=(0.11, 0.05), b=(0.11, 0.04), c=(0.125, 0.06))
        self.assertFalse(checks["a > b on recall@20"])   # equal is not above
        self.assertTrue(checks["a > b on ndcg@20"])
        self.assertFalse(checks["a >= 0.95 c on recall@20"])  # 0.11 < 0.11875
        self.assertFalse(checks["a >= 0.95 c on ndcg@20"])    # 0.05 < 0.057
        self.assertIn("- a > b on recall@20: NOT met", md)


if __name__ == "__main__":
    unittest.main()
