"""The seeds a study or a search runs: the spec's, or `--seeds N` of them."""

from __future__ import annotations

from sagan.errors import ConfigError


def seeds_for(spec_seeds: list[int], n: int | None) -> list[int]:
    """The spec's seeds, or its first n (more: the next integers after its largest)."""
    if n is None:
        return list(spec_seeds)
    if n < 1:
        raise ConfigError(f"--seeds must be >= 1, got {n}")
    seeds = list(spec_seeds[:n])
    while len(seeds) < n:
        seeds.append(max(seeds) + 1)
    return seeds
