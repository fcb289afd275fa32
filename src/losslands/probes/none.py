"""``probe=none``: train only."""


def run(ctx, cfg) -> dict:
    return {}
