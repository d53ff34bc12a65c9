"""`sagan study SPEC.yaml`: run every arm of a study over seeds at an equal budget, then write the tables."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="study spec (YAML): name, base, budget, seeds, eval, baseline, arms; or a search "
                   "spec (name, base, search, seeds, eval), which runs successive halving over its search space")
    p.add_argument("--out", help="study folder (default studies/runs/NAME)")
    p.add_argument("--seeds", type=int, metavar="N", help="run N seeds: the spec's first N (more: the next integers)")
    p.add_argument("--only", metavar="ARM,...", help="run only these arms (the tables still show every arm run)")
    p.add_argument("--parallel", type=int, default=1, metavar="P",
                   help="runs at once, each with cores/P threads (default 1: wall-clock budgets are fair only "
                        "when runs do not share the machine)")
    p.add_argument("--fresh", action="store_true",
                   help="delete the study folder's runs and results, and empty the spec's record folder, and start "
                        "over (refused in a folder no study made)")
    p.add_argument("--tables-only", action="store_true", help="train nothing: rewrite study.json/md/html from the runs")
    p.add_argument("--plan", action="store_true",
                   help="train nothing: print, for each score and arm, the smallest difference the study detects at "
                        "its seeds (80%% power, its paired t test, Holm over all comparisons), from the seed spread "
                        "of its finished runs (or --pilot's)")
    p.add_argument("--difference", metavar="D|SCORE=D,...",
                   help="with --plan: also print how many seeds this difference needs (one number for every score, "
                        "or per score, e.g. fd_classifier=0.5,kid_classifier=0.01)")
    p.add_argument("--pilot", metavar="STUDY",
                   help="with --plan: take the seed spread from another study's runs (its study.json, study folder "
                        "or record folder), matched by arm name")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sagan.errors import ConfigError
    from sagan.study import load_spec, run_study, write_outputs
    from sagan.study.plan import plan_of_study
    from sagan.study.search_spec import is_search_spec
    from sagan.study.seeds import seeds_for
    from sagan.train import Interrupted

    if (args.difference is not None or args.pilot) and not args.plan:
        raise ConfigError("--difference and --pilot go with --plan")
    if is_search_spec(args.spec):  # a spec with `search:` runs successive halving instead of fixed arms
        from sagan.commands import study_search

        return study_search.run(args)
    spec = load_spec(args.spec)
    out = Path(args.out or Path("studies") / "runs" / spec.name)
    only = [a.strip() for a in args.only.split(",") if a.strip()] if args.only else None
    seeds = seeds_for(spec.seeds, args.seeds)
    if args.plan:
        print(plan_of_study(spec, out, len(seeds), args.difference, args.pilot), end="")
        return 0
    if not args.tables_only:
        try:
            run_study(spec, out, seeds=seeds, only=only, parallel=args.parallel, fresh=args.fresh)
        except Interrupted as exc:
            write_outputs(spec, out)
            print(f"sagan study: interrupted; the finished runs are in {out / 'study.md'}. Run the same command to "
                  "resume", file=sys.stderr)
            return exc.exit_code
    study = write_outputs(spec, out)
    done = sum(e["runs_done"] for e in study["summary"]["arms"].values())
    failed = sum(len(e.get("failed", [])) for e in study["summary"]["arms"].values())
    print(f"study {spec.name}: {done} finished run(s)" + (f", {failed} failed (see study.md)" if failed else "")
          + f"; tables in {out / 'study.md'}, page {out / 'study.html'}, "
          f"data {out / 'study.json'}", file=sys.stderr)
    return 0
