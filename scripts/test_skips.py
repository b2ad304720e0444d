#!/usr/bin/env python3
"""Lists the GoogleTest cases a test run skipped, with their reasons.

CTest counts a test binary as passed when its skipped cases were the only ones not run, so
`make test` prints this after CTest: every skipped case by name, and a last line with the counts.

    scripts/test_skips.py DIR   # DIR holds one --gtest_output=xml file per test binary

Exit status 0 (skips are not failures); 2 when a result file cannot be read (the others are
still listed).
"""
import os
import sys
import xml.etree.ElementTree as ET


def read_results(path):
    """(cases run, [(case name, reason)]) of one GoogleTest XML file."""
    root = ET.parse(path).getroot()
    run = 0
    skipped = []
    for case in root.iter("testcase"):
        if case.get("status") != "run":
            continue  # DISABLED_ cases: GoogleTest reports them separately, never run
        run += 1
        if case.get("result") == "skipped":
            node = case.find("skipped")
            message = node.get("message", "") if node is not None else ""
            # The message starts with "file:line" on its own line; the reason, if any, follows.
            lines = [x.strip() for x in message.splitlines() if x.strip()]
            reason = lines[1] if len(lines) > 1 else "(no reason given)"
            skipped.append((f"{case.get('classname')}.{case.get('name')}", reason))
    return run, skipped


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    folder = argv[1]
    files = sorted(f for f in os.listdir(folder) if f.endswith(".xml")) if os.path.isdir(folder) else []
    if not files:
        print(f"test skips: no GoogleTest results under {folder}")
        return 0
    total_run = 0
    total_skipped = 0
    binaries = 0
    unreadable = 0
    for name in files:
        try:
            run, skipped = read_results(os.path.join(folder, name))
        except (OSError, ET.ParseError) as e:  # said, and the others still listed
            print(f"test skips: cannot read {os.path.join(folder, name)}: {e}", file=sys.stderr)
            unreadable += 1
            continue
        total_run += run
        total_skipped += len(skipped)
        binaries += bool(skipped)
        for case, reason in skipped:
            print(f"skipped: {name[:-4]} {case}: {reason}")
    print(f"test skips: {total_skipped} of {total_run} GoogleTest cases skipped, in {binaries} of {len(files)} "
          f"binaries (CTest counts those binaries as passed)")
    return 2 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
