"""``python -m losslands.report <sweep dir> [--wandb] [--strict]``."""

from __future__ import annotations

import argparse
import sys

from losslands.report.write import IncompleteSweep, write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m losslands.report", description=__doc__)
    parser.add_argument("sweep_dir", help="a folder written by a Hydra multirun (multirun/<name>)")
    parser.add_argument("--wandb", action="store_true", help="also log the report as a W&B 'report' job")
    parser.add_argument("--wandb-mode", default=None, help="offline (default) or online")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any job or file failed or could not be read "
                             "(the report is still written, listing them)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.sweep_dir, wandb=args.wandb, wandb_mode=args.wandb_mode, strict=args.strict)
    except IncompleteSweep as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
