"""scripts/e2e_check.py on hand-made topic read-backs: a whole one passes, and each kind of
damage it exists to catch fails it, naming the damage."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GSAU_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SOURCE, "scripts", "e2e_check.py")
RESTART = 10  # the first run's last model_version


def envelope(kind, key, offset, fmt, version, vec=(0.6, 0.8)):
    if fmt == "binary":
        headers = ["gsau.format", "f32le", "gsau.dim", str(len(vec)), "gsau.id", key, "gsau.kind", kind,
                   "gsau.model_version", str(version)]
        payload = struct.pack(f"<{len(vec)}f", *vec).decode("latin-1")
    else:
        headers = []
        payload = json.dumps({"id": key, "kind": kind, "dim": len(vec), "model_version": version,
                              "embedding": list(vec)})
    return {"key": key, "partition": 0, "offset": offset, "headers": headers, "payload": payload}


class E2eCheckTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        with open(os.path.join(self.root, "data.txt"), "w") as f:
            f.write("u1 i1 i2\nu2 i2\n")
        # (key, format, version) in offset order: JSON before the restart, binary after.
        self.topics = {
            "user": [("u1", "json", 3), ("u2", "json", 5), ("u1", "binary", 12), ("u2", "binary", 13)],
            "item": [("i1", "binary", 12), ("i2", "binary", 14)],
        }
        self.vectors = {}

    def tearDown(self):
        self.tmp.cleanup()

    def run_check(self):
        for kind, records in self.topics.items():
            with open(os.path.join(self.root, f"kcat-{kind}.jsonl"), "w", encoding="latin-1") as f:
                for offset, (key, fmt, version) in enumerate(records):
                    vec = self.vectors.get((kind, offset), (0.6, 0.8))
                    f.write(json.dumps(envelope(kind, key, offset, fmt, version, vec)) + "\n")
            with open(os.path.join(self.root, f"py-{kind}.tsv"), "w") as f:
                for key, fmt, version in records:
                    f.write(f"{key}\t{kind}\t{version}\t2\t{fmt}\t1.0\n")
        proc = subprocess.run([sys.executable, SCRIPT, "--data", os.path.join(self.root, "data.txt"), "--work",
                               self.root, "--out", self.root, "--restart-version", str(RESTART)],
                              capture_output=True, text=True)
        with open(os.path.join(self.root, "summary.json")) as f:
            summary = json.load(f)
        return proc, summary

    def assert_fails_with(self, text):
        proc, summary = self.run_check()
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertFalse(summary["passed"])
        failures = [m for t in summary["topics"] for m in t["failures"]]
        self.assertTrue(any(text in m for m in failures), failures)

    def test_a_whole_read_back_passes(self):
        proc, summary = self.run_check()
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertTrue(summary["passed"])
        users, items = summary["topics"]
        self.assertEqual(users["records_by_format"], {"json": 2, "binary": 2})
        self.assertEqual(users["keys"], 2)
        self.assertEqual(items["model_version_binary"], [12, 14])
        self.assertIn("Result: PASS", proc.stdout)

    def test_a_version_going_back_fails(self):
        self.topics["user"].append(("u1", "binary", 11))
        self.assert_fails_with("not above their key's previous one")

    def test_a_version_not_past_the_restart_fails(self):
        self.topics["item"][0] = ("i1", "binary", RESTART)
        self.assert_fails_with("did not keep increasing across the restart")

    def test_a_user_without_a_record_fails(self):
        self.topics["user"] = [r for r in self.topics["user"] if r[0] != "u2"]
        self.assert_fails_with("users who clicked have no record")

    def test_a_key_the_data_never_had_fails(self):
        self.topics["item"].append(("i7", "binary", 15))
        self.assert_fails_with("keys that the data never clicked")

    def test_a_non_finite_embedding_fails(self):
        self.vectors[("user", 2)] = (float("nan"), 1.0)
        self.assert_fails_with("records do not decode")

    def test_no_json_anywhere_fails(self):
        self.topics["user"] = [(k, "binary", v + 10) for k, _, v in self.topics["user"]]
        self.assert_fails_with("no JSON records left")

    def test_readers_that_disagree_fail(self):
        proc, _ = self.run_check()
        self.assertEqual(proc.returncode, 0)
        with open(os.path.join(self.root, "py-item.tsv"), "a") as f:
            f.write("i2\titem\t14\t2\tbinary\t1.0\n")  # a record kcat did not see
        proc = subprocess.run([sys.executable, SCRIPT, "--data", os.path.join(self.root, "data.txt"), "--work",
                               self.root, "--out", self.root, "--restart-version", str(RESTART)],
                              capture_output=True, text=True)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("disagree", proc.stdout)


if __name__ == "__main__":
    unittest.main()
