"""Run every benchmark in turn (``make bench``); each prints its ceiling beside its figures.

    python -m bench.run [--quick]

``--quick`` shrinks the inputs (100 MiB file, 100k-message search, 1000
messages) for a smoke run; the figures in bench/RESULTS.md are from the
full sizes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = [
        ["bench.delivery", *(["--messages", "1000"] if args.quick else [])],
        ["bench.files", *(["--size-mib", "100"] if args.quick else [])],
        ["bench.search", *(["--messages", "100000", "--rounds", "50"] if args.quick else [])],
    ]
    failed = 0
    for module, *options in runs:
        print(f"\n=== {module} {' '.join(options)}", flush=True)
        failed += subprocess.run([sys.executable, "-m", module, *options], check=False).returncode != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
