"""scripts/test_skips.py on GoogleTest XML written by hand in the format GoogleTest 1.12 writes."""
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GSAU_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(SOURCE, "scripts", "test_skips.py")

WITH_SKIPS = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" failures="0" disabled="1" errors="0" time="0" name="AllTests">
  <testsuite name="A" tests="3" failures="0" disabled="1" skipped="1" errors="0" time="0">
    <testcase name="Skips" file="t.cc" line="2" status="run" result="skipped" time="0" classname="A">
      <skipped message="t.cc:2&#x0A;no &quot;procfs&quot; &lt;here&gt;"><![CDATA[t.cc:2
no "procfs" <here>]]></skipped>
    </testcase>
    <testcase name="Passes" file="t.cc" line="3" status="run" result="completed" time="0" classname="A" />
    <testcase name="DISABLED_Off" file="t.cc" line="5" status="notrun" result="suppressed" time="0" classname="A" />
  </testsuite>
  <testsuite name="B" tests="1" failures="0" disabled="0" skipped="1" errors="0" time="0">
    <testcase name="Bare" file="t.cc" line="4" status="run" result="skipped" time="0" classname="B">
      <skipped message="t.cc:4&#x0A;"><![CDATA[t.cc:4
]]></skipped>
    </testcase>
  </testsuite>
</testsuites>
"""

NO_SKIPS = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="2" failures="0" disabled="0" errors="0" time="0" name="AllTests">
  <testsuite name="C" tests="2" failures="0" disabled="0" skipped="0" errors="0" time="0">
    <testcase name="One" status="run" result="completed" time="0" classname="C" />
    <testcase name="Two" status="run" result="completed" time="0" classname="C" />
  </testsuite>
</testsuites>
"""


def run(folder):
    return subprocess.run([sys.executable, SCRIPT, folder], capture_output=True, text=True)


class TestSkipsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def test_lists_every_skipped_case_with_its_reason_and_counts(self):
        self.write("alpha_test.xml", WITH_SKIPS)
        self.write("beta_test.xml", NO_SKIPS)
        r = run(self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], 'skipped: alpha_test A.Skips: no "procfs" <here>')
        self.assertEqual(lines[1], "skipped: alpha_test B.Bare: (no reason given)")
        # The disabled case was not run: neither counted nor listed.
        self.assertTrue(lines[2].startswith("test skips: 2 of 5 GoogleTest cases skipped, in 1 of 2 binaries"),
                        lines[2])
        self.assertEqual(len(lines), 3)

    def test_no_skips_prints_only_the_counts(self):
        self.write("beta_test.xml", NO_SKIPS)
        r = run(self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 1)
        self.assertIn("0 of 2 GoogleTest cases skipped, in 0 of 1 binaries", r.stdout)

    def test_missing_folder_says_so(self):
        r = run(os.path.join(self.dir, "absent"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no GoogleTest results under", r.stdout)

    def test_unreadable_result_fails_after_listing_the_others(self):
        self.write("broken_test.xml", "<testsuites><testsuite>")
        self.write("alpha_test.xml", WITH_SKIPS)
        r = run(self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr)
        self.assertIn("broken_test.xml", r.stderr)
        self.assertIn("skipped: alpha_test A.Skips", r.stdout)
        self.assertIn("test skips: 2 of 3 GoogleTest cases skipped", r.stdout)


if __name__ == "__main__":
    unittest.main()
