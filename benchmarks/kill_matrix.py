"""SIGKILL every resumable command 10 times at seeded moments and count what survives.

For each command of ``tests/hardening/kill_commands.py`` (``run`` of both studies, ``mac train``,
``tuned-lens train``, ``compare``, ``capture``, on a tiny model): one uninterrupted reference run,
then the kills, in chains of ``--chain`` (kill, resume and kill again, ..., then resume to the end)
on fresh output directories, with kill moments from a seeded RNG (see
``tests/hardening/kill_harness.py``). The table gives, per command: kills, kills that landed while
the process was still working (a kill aimed after a resumed run had already finished counts as
not landed), completed runs whose results equal the reference bit for bit (timing and path fields
aside), lost results (completed runs that differ or failed, plus files found cut short under a
final name after a kill), and tracebacks on any process's stderr (a SIGKILLed process prints
none; a resumed one must print none).

Run: nice .venv/bin/python benchmarks/kill_matrix.py [--kills 10] [--chain 2] [--seed 0] [--only capture]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.hardening.kill_commands import COMMANDS, prepare  # noqa: E402
from tests.hardening.kill_harness import TRACEBACK, env_for, kill_and_resume, reference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per command")
    parser.add_argument("--chain", type=int, default=2, help="kills in a row on one output directory before it is resumed to the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", choices=COMMANDS, help="a command to run (repeatable; default: all)")
    args = parser.parse_args()
    header = f"{'command':<22}{'kills':>6}{'mid-work':>10}{'equal':>10}{'lost':>6}{'tracebacks':>12}{'seconds':>9}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="kill_matrix_") as tmp:
        root = Path(tmp)
        cmds = prepare(root / "inputs")
        for name in args.only or COMMANDS:
            t0 = time.perf_counter()
            cmd, slug = cmds[name], name.replace(" ", "_")
            env = env_for(root / "cache")
            ref = reference(cmd, root / slug / "reference", env)
            rng = random.Random(f"{args.seed}:{name}")
            kills = mid = equal = runs = lost = 0
            tracebacks = ref.stderr.count(TRACEBACK)
            i = 0
            while kills < args.kills:
                n = min(args.chain, args.kills - kills)
                report = kill_and_resume(cmd, root / slug / f"killed_{i}", env, ref, rng, n, check=[root / "cache"])
                i += 1
                kills += n
                runs += 1
                mid += sum(k.mid_work for k in report.kills)
                equal += report.equal
                lost += (not report.equal) + report.partial_files
                tracebacks += report.tracebacks
                for problem in report.differences[:5] + [p for k in report.kills for p in k.partial]:
                    print(f"  {name}: {problem}", file=sys.stderr)
                if report.final_rc != 0:
                    print(f"  {name}: the resumed run exited {report.final_rc}:\n{report.final_stderr[-2000:]}", file=sys.stderr)
            rows.append(f"{name:<22}{kills:>6}{mid:>10}{f'{equal}/{runs}':>10}{lost:>6}{tracebacks:>12}{time.perf_counter() - t0:>9.0f}")
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"kill matrix: {args.kills} seeded SIGKILLs per command, chains of {args.chain}, seed {args.seed}")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
