"""scripts/order_ties.py on a hand-made items/times pair whose re-ordering is written out below."""
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GSAU_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SOURCE, "scripts", "order_ties.py")


class OrderTiesTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, lines):
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        return path

    def run_script(self, items, times):
        out = os.path.join(self.root, "out")
        proc = subprocess.run([sys.executable, SCRIPT, items, times, out], capture_output=True, text=True)
        return proc, out

    def test_ties_are_ordered_by_item_id_and_nothing_else_moves(self):
        items = self.write("items.txt", [
            "1 30 10 20 5",   # 30 and 10 tie at day 100 and swap; 20 and 5 are on days of their own
            "2 7 3 9",        # no ties: unchanged
            "3 4 8 2",        # 8 and 2 tie at the end: the test item changes, the validation item too
        ])
        times = self.write("times.txt", [
            "1 100 100 200 300",
            "2 100 200 300",
            "3 100 500 500",
        ])
        proc, out = self.run_script(items, times)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(os.path.join(out, "items.txt")) as f:
            self.assertEqual(f.read().splitlines(), ["1 10 30 20 5", "2 7 3 9", "3 4 2 8"])
        with open(os.path.join(out, "times.txt")) as f:
            self.assertEqual(f.read().splitlines(), ["1 100 100 200 300", "2 100 200 300", "3 100 500 500"])
        self.assertIn("order changed 2, validation item changed 1, test item changed 1", proc.stdout)

    def test_misaligned_files_are_refused_naming_the_line(self):
        items = self.write("items.txt", ["1 3 4", "2 5 6 7"])
        times = self.write("times.txt", ["1 10 20", "2 10 20"])
        proc, out = self.run_script(items, times)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("line 2", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "items.txt")))  # nothing half-written

    def test_times_out_of_order_are_refused(self):
        items = self.write("items.txt", ["1 3 4 5"])
        times = self.write("times.txt", ["1 30 20 40"])
        proc, _ = self.run_script(items, times)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("not in ascending order", proc.stderr)


if __name__ == "__main__":
    unittest.main()
