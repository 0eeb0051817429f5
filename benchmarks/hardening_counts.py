"""The hardening suite's counts and wall time: inputs tried per reader and option, files grepped for secrets, commands checked twice.

Counts come from the tests themselves (their parameter lists and the active Hypothesis profile), and
the secrets figure from running ``tests/hardening/test_secrets.py``, which prints how many files and
outputs it searched. With ``--time`` it also runs the whole ``tests/hardening`` directory in the
default profile and prints its wall time (the issue's budget: under 5 minutes). Kill counts come from
``benchmarks/kill_matrix.py``.

Run: .venv/bin/python benchmarks/hardening_counts.py [--time] [--profile default|long]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import tests.conftest  # noqa: E402,F401  (registers the profiles)
from hypothesis import settings  # noqa: E402
from tests.hardening import test_fuzz_cli, test_fuzz_options, test_fuzz_readers  # noqa: E402
from tests.hardening.test_determinism import SKIPPED  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", action="store_true", help="also run tests/hardening and print its wall time")
    ap.add_argument("--profile", default="default")
    args = ap.parse_args()
    settings.load_profile(args.profile)
    n = settings().max_examples
    degenerate = len(test_fuzz_readers.DEGENERATE)
    readers = len(test_fuzz_readers.READERS)
    print(f"profile {args.profile}: {n} Hypothesis examples per fuzz test")
    print(f"file readers fuzzed: {readers}, {n} generated + {degenerate} degenerate inputs each = {readers * (n + degenerate)} inputs")
    per_option = test_fuzz_options.values_per_option()
    options = test_fuzz_options.OPTIONS
    print(f"CLI options fuzzed: {len(options)} options of {len(test_fuzz_options.COMMANDS)} commands, {per_option} values each = "
          f"{len(options) * per_option} invocations")
    files = len(test_fuzz_cli.FILE_COMMANDS)
    each = test_fuzz_cli.FILES_PER_COMMAND
    print(f"config/registry files fed to {files} commands: {each} each = {each * files} invocations")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/hardening/test_secrets.py"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    found = re.search(r"secrets: .*", res.stdout)
    print(found.group(0) if found else f"secrets test failed:\n{res.stdout[-2000:]}")
    print(f"determinism: every command but {', '.join(SKIPPED)} run twice and compared (tests/hardening/test_determinism.py)")
    if args.time:
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/hardening"], cwd=ROOT,
                             capture_output=True, text=True, check=False)
        tail = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-500:]
        print(f"tests/hardening wall time: {time.perf_counter() - start:.0f} s ({tail})")


if __name__ == "__main__":
    main()
