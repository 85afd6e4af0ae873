"""``python -m mtor_cli.realm_service``: the embedded realm's background process.

What ``mtor realm run`` runs, minus the CLI: ``mtor ask`` spawns this when
no realm is up, and the command-line framework (its parsing imports pydantic)
would add a tenth of a second to every cold start. The caller has prepared the
model already; the options are those ``mtor_cli.realm._start`` passes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtor_cli.realm_service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--model", default=None, help="the prepared chat model (default: the default model)")
    parser.add_argument("--gpu", type=int, default=None)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--keep-alive", type=float, default=None)
    args = parser.parse_args(argv)

    from mtor_cli.realm import run_service

    run_service(
        host=args.host,
        port=args.port,
        db=args.db,
        model=args.model,
        gpu=args.gpu,
        runtime=args.runtime,
        keep_alive=args.keep_alive,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
