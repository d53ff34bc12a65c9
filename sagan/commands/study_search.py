"""`sagan study SEARCH.yaml`: a spec with a `search` runs successive halving over its configurations, then the
finalists and the base over seeds (sagan/study/search.py); the same options as a study's, less --only.
--plan plans the final comparison once the rungs have chosen its finalists.
--seeds N sets the final runs' seeds; --parallel P runs each rung's configurations, and then the final runs, P
at a time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from sagan.errors import ConfigError
    from sagan.study.search import run_search, write_search_outputs
    from sagan.study.search_spec import load_search_spec
    from sagan.study.seeds import seeds_for
    from sagan.train import Interrupted

    spec, configs = load_search_spec(args.spec)
    if args.only:
        raise ConfigError("--only picks arms of a study; a search has no arms to pick (its rungs choose them)")
    out = Path(args.out or Path("studies") / "runs" / spec.name)
    seeds = seeds_for(spec.seeds, args.seeds)
    if args.plan:
        return _plan(args, spec, configs, out, seeds)
    if not args.tables_only:
        try:
            run_search(spec, configs, out, seeds=seeds, parallel=args.parallel, fresh=args.fresh)
        except Interrupted as exc:
            write_search_outputs(spec, configs, out)
            print(f"sagan study: interrupted; the rungs so far are in {out / 'study.md'}. Run the same command to "
                  "resume", file=sys.stderr)
            return exc.exit_code
    elif not (out / "spec.json").exists() and not (spec.record and (Path(spec.record) / "spec.json").exists()):
        raise ConfigError(f"{out} holds no search yet: run it first (without --tables-only)")
    study = write_search_outputs(spec, configs, out)
    final = study["final"]
    done = sum(e["runs_done"] for e in final["summary"]["arms"].values()) if final else 0
    print(f"search {spec.name}: {len(study['rungs'])} rung(s), finalists {', '.join(study['finalists'] or []) or '-'}"
          f", {done} finished final run(s); tables in {out / 'study.md'}, page {out / 'study.html'}, data "
          f"{out / 'study.json'}", file=sys.stderr)
    return 0


def _plan(args, spec, configs: list[dict], out: Path, seeds: list[int]) -> int:
    """--plan for a search plans its final comparison (the finalists against the base over the seeds), from the
    seed spread of its finished final runs or of --pilot's; it trains and writes nothing."""
    from sagan.errors import ConfigError
    from sagan.study.plan import plan_of_study
    from sagan.study.search import planned_final

    final = planned_final(spec, configs, out, seeds)
    if final is None:
        raise ConfigError(f"--plan plans the final comparison of search {spec.name!r}, whose rungs have not chosen "
                          f"its finalists yet (in {out}" + (f" or the record {spec.record}" if spec.record else "")
                          + "): run the search first")
    print(plan_of_study(final, out / "final", len(seeds), args.difference, args.pilot), end="")
    return 0
