"""How long `mtor` takes to answer, as people run it, beside a bare interpreter.

    python bench/cli.py [--runs 9]

Rows (median wall time of a fresh process each run, and its ratio to the
baseline `python -c pass` measured in the same run):

- `mtor --help`, `mtor ask --help`: start-up alone;
- `mtor ask -i echo`: start-up plus one round trip to a realm (an echo
  worker on a broker in this process's thread);
- `mtor ask` with no intent where the realm serves more than chat: the realm
  routes it (with the embedding recogniser loaded in the realm when it is
  installed); the CLI sends text and loads no model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.realm import ThreadRealm, process_env
from worker.backends.base import Device
from worker.backends.echo import EchoBackend


class EchoAs(EchoBackend):
    """Echo under another intent's name: a realm that serves chat and vision, no model."""

    def __init__(self, intent: str) -> None:
        super().__init__(None, Device())
        self.intent = intent


def timed(argv: list[str], env: dict[str, str], runs: int) -> float:
    took = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        took.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    mtor = [sys.executable, "-m", "mtor_cli"]
    with tempfile.TemporaryDirectory() as tmp:
        env = process_env(Path(tmp) / "home")
        env.pop("MTOR_BROKER", None)
        recogniser = None
        try:
            from mtor_cli.intent import installed_recogniser

            recogniser = installed_recogniser()
        except ImportError:
            pass
        with ThreadRealm(Path(tmp) / "journal.db", recogniser=recogniser) as realm:
            for intent in ("echo", "chat", "vision"):
                realm.add_worker([EchoAs(intent)], slots=4)
            realm.wait_workers(3)
            if recogniser is not None:
                recogniser.warm()
            baseline = timed([sys.executable, "-c", "pass"], env, args.runs)
            rows = [
                ("mtor --help", [*mtor, "--help"]),
                ("mtor ask --help", [*mtor, "ask", "--help"]),
                ("mtor ask -i echo (one round trip)", [*mtor, "ask", "-b", realm.url, "-i", "echo", "hello"]),
                (
                    "mtor ask, routed by the realm" + (" (recogniser loaded there)" if recogniser else " (rules only)"),
                    [*mtor, "ask", "-b", realm.url, "tell me about otters"],
                ),
            ]
            print(f"{'baseline: python -c pass':<58} {baseline:7.3f} s   1.00x")
            for name, argv in rows:
                took = timed(argv, env, args.runs)
                print(f"{name:<58} {took:7.3f} s  {took / baseline:5.2f}x")
    print(f"(medians of {args.runs} fresh processes; cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
