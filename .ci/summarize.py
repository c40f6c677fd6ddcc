"""Add up the JUnit reports that every tox environment's pytest wrote.

Prints one line per environment and the closing ``N passed, N failed`` line;
exits non-zero if any test failed or an environment that runs tests left no
report (an environment that ran no test is a failure, not a pass).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TEST_ENVS = ("py310", "py311", "py312", "py313", "oldest", "faults")


def main(tox_dir: str) -> int:
    passed = failed = skipped = 0
    ok = True
    for env in TEST_ENVS:
        report = Path(tox_dir) / env / "junit.xml"
        if not report.exists():
            print("{}: no test report".format(env))
            ok = False
            continue
        root = ET.parse(report).getroot()
        suites = [root] if root.tag == "testsuite" else list(root)
        tests = sum(int(s.get("tests", 0)) for s in suites)
        bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
        skip = sum(int(s.get("skipped", 0)) for s in suites)
        print("{}: {} tests, {} failed, {} skipped".format(env, tests, bad, skip))
        if tests == 0:
            ok = False
        passed += tests - bad - skip
        failed += bad
        skipped += skip
    print("{} passed, {} failed, {} skipped".format(passed, failed, skipped))
    return 0 if ok and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".tox"))
