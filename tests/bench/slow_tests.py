"""Write tests/slow.txt from a JUnit XML of a full run: the tests that took at least SECONDS.

    python3 -m pytest --junitxml=/tmp/suite.xml
    python tests/bench/slow_tests.py /tmp/suite.xml [--seconds 3] [--out tests/slow.txt]

tests/conftest.py marks the listed tests ``slow``, so ``python3 -m pytest -m "not slow"`` is the
edit-test loop (issue 25: under 2 minutes) and ``python3 -m pytest`` still runs everything. A new
test is in the fast subset until the list is written again from a run that timed it.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def slow_ids(junit: Path, seconds: float) -> list[str]:
    """Node ids (``tests/test_x.py::test_y[param]``) of the test cases that took at least ``seconds``."""
    out = []
    for case in ET.parse(junit).iter("testcase"):
        if float(case.get("time", 0)) >= seconds:
            module = case.get("classname", "").replace(".", "/") + ".py"
            out.append(f"{module}::{case.get('name')}")
    return sorted(set(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("junit", type=Path)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "slow.txt")
    a = ap.parse_args()
    ids = slow_ids(a.junit, a.seconds)
    head = (f"# Tests that took >= {a.seconds:g} s in {a.junit.name}; written by tests/bench/slow_tests.py.\n"
            "# tests/conftest.py marks them slow: `python3 -m pytest -m 'not slow'` skips them.\n")
    a.out.write_text(head + "".join(f"{i}\n" for i in ids))
    print(f"{len(ids)} slow tests -> {a.out}")


if __name__ == "__main__":
    main()
