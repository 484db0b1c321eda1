"""Each algorithm's default variant and the label its runs carry in reports (no torch: bench.report uses it).

A run of an algorithm's default variant is labelled by the algorithm alone (``shac``, ``pwm``); any other
variant by ``algo:variant`` (``pwm:offline``, ``shac:diffrl``), so that two variants of one algorithm are
two lines of a report, never one line with duplicate seeds.
"""

from __future__ import annotations

DEFAULT_VARIANTS = {
    "shac": "pwm",
    "pwm": "online",
    "ppo": "fork",
    "sac": "fork",
    "bptt": "diffrl",
    "tdmpc2": "tdmpc2",
}
"""The variant ``bench.run`` uses when ``--variant`` is not given."""


def run_label(algo: str, variant: str | None) -> str:
    """``algo`` for its default variant (or none recorded), else ``algo:variant``."""
    if variant is None or variant == DEFAULT_VARIANTS.get(algo):
        return algo
    return f"{algo}:{variant}"
