"""``python -m losslands.report <sweep dir> [--wandb]``."""

from __future__ import annotations

import argparse

from losslands.report.write import write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m losslands.report", description=__doc__)
    parser.add_argument("sweep_dir", help="a folder written by a Hydra multirun (multirun/<name>)")
    parser.add_argument("--wandb", action="store_true", help="also log the report as a W&B 'report' job")
    parser.add_argument("--wandb-mode", default=None, help="offline (default) or online")
    args = parser.parse_args(argv)
    path = write_report(args.sweep_dir, wandb=args.wandb, wandb_mode=args.wandb_mode)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
