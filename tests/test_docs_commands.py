"""The README and docs/ show only commands that the real CLI accepts, and links that lead somewhere.

Every `sagan ...` command in README.md and docs/*.md (fenced code blocks and inline code, also `python -m sagan`,
`torchrun ... -m sagan`, line continuations, `&&` chains and env-var prefixes) is parsed by the parser that
`sagan.cli` builds, with abbreviations switched off so that a doc cannot lean on a prefix of a real flag. A usage
line with `[optional]` parts or `A|B` alternatives (and any inline fragment) cannot be parsed as it stands, so
there the subcommand and every `--flag` it names must exist. Train commands are resolved as `--dry-run` resolves
them, and every configs/*.yaml or studies/**/*.yaml a command names (search specs too) must exist and load.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_NOT_SHELL = {"python", "py", "yaml", "yml", "json", "csv", "toml", "html", "js", "css"}
_SHELL_JOINERS = {"&&", "||", "|", ";"}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_REFERENCED_FILE = re.compile(r"(?:^|[=/\s])((?:configs|studies)/[\w./-]+\.ya?ml)$")  # studies/search/ too


@dataclass(frozen=True)
class DocCommand:
    """One `sagan` command as a page shows it."""

    where: str  # "docs/training.md:12"
    text: str  # the shell text it came from, continuations joined
    argv: tuple[str, ...]  # the arguments after `sagan`
    synopsis: bool  # a usage line or an inline fragment: the subcommand and flags must exist, no full parse

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


# --- finding the commands -------------------------------------------------------------------------------------


def _split_markdown(text: str) -> tuple[list[tuple[int, str, str]], str]:
    """Fenced blocks as (first line number, language, body) and the prose with those blocks blanked out."""
    blocks, prose, lines = [], [], text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        indent, fence, lang = m.groups()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        blocks.append((i + 2, lang.lower(), "\n".join(body)))
        prose.extend([""] * (j + 1 - i))  # keep line numbers of the prose
        i = j + 1
    return blocks, "\n".join(prose)


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in prose: plain words are good enough to find flags
        return line.split()


def _segments(tokens: list[str]) -> list[list[str]]:
    """A token list cut at `&&`, `||`, `|` and `;`."""
    out, current = [], []
    for tok in tokens:
        if tok in _SHELL_JOINERS:
            out.append(current)
            current = []
        elif tok.endswith(";") and len(tok) > 1:
            current.append(tok[:-1])
            out.append(current)
            current = []
        else:
            current.append(tok)
    out.append(current)
    return [s for s in out if s]


def _sagan_argv(segment: list[str]) -> list[str] | None:
    """The arguments after `sagan` / `python -m sagan` / `torchrun ... -m sagan`, or None for another command."""
    words = list(segment)
    while words and (words[0] in {"$", "env", "time", "nohup", "exec"} or _ENV_ASSIGNMENT.match(words[0])):
        words.pop(0)
    if not words:
        return None
    if words[0] == "sagan":
        return words[1:]
    if Path(words[0]).name.startswith(("python", "torchrun")):
        for k in range(1, len(words) - 1):
            if words[k] == "-m":
                return words[k + 2:] if words[k + 1] == "sagan" else None
    return None


def _is_synopsis(argv: list[str]) -> bool:
    return any("[" in a or "]" in a or "|" in a or a == "..." for a in argv)


def commands_in_text(text: str, where: str) -> list[DocCommand]:
    """Every sagan command in a Markdown text; `where` is the name used in failure messages."""
    found: list[DocCommand] = []
    blocks, prose = _split_markdown(text)
    for first_line, lang, body in blocks:
        if lang in _NOT_SHELL:
            continue
        lines, start = body.split("\n"), 0
        while start < len(lines):
            joined, end = lines[start], start
            while joined.rstrip().endswith("\\") and end + 1 < len(lines):
                end += 1
                joined = joined.rstrip()[:-1] + " " + lines[end].strip()
            for segment in _segments(_tokens(joined)):
                argv = _sagan_argv(segment)
                if argv is not None:
                    found.append(DocCommand(f"{where}:{first_line + start}", joined.strip(), tuple(argv),
                                            _is_synopsis(argv)))
            start = end + 1
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
        span = " ".join(m.group(1).split())  # an inline span may wrap onto the next line
        line = prose.count("\n", 0, m.start()) + 1
        for segment in _segments(_tokens(span)):
            argv = _sagan_argv(segment)
            if argv is not None:
                found.append(DocCommand(f"{where}:{line}", span, tuple(argv), True))
    return found


def doc_commands() -> list[DocCommand]:
    return [c for path in DOC_FILES for c in commands_in_text(path.read_text(), str(path.relative_to(ROOT)))]


# --- checking them against the real CLI -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    """The CLI's own parser, with abbreviations off: a doc must spell every flag in full."""
    from sagan.cli import build_parser

    parser = build_parser()
    for sub in _subparsers(parser).values():
        sub.allow_abbrev = False
    parser.allow_abbrev = False
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("sagan.cli.build_parser() has no subcommands")


def _parse(argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    """parse_args on the real parser: (namespace, "") or (None, what argparse said)."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            return _parser().parse_args(argv), ""
    except SystemExit as exc:
        if exc.code == 0:  # --help
            return None, ""
        return None, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"


def _check_referenced_files(cmd: DocCommand) -> list[str]:
    from sagan.config import TrainConfig, apply_overrides, load_yaml
    from sagan.errors import SaganError
    from sagan.study import load_spec
    from sagan.study.search_spec import is_search_spec, load_search_spec

    problems = []
    for arg in cmd.argv:
        m = _REFERENCED_FILE.search(arg)
        if not m:
            continue
        path = ROOT / m.group(1)
        if not path.is_file():
            problems.append(f"{m.group(1)} does not exist")
            continue
        try:
            if m.group(1).startswith("configs/"):
                apply_overrides(TrainConfig(), load_yaml(path))
            elif is_search_spec(path):
                load_search_spec(path)
            else:
                load_spec(path)
        except SaganError as exc:
            problems.append(f"{m.group(1)} does not load: {exc}")
    return problems


def _check_synopsis(cmd: DocCommand) -> list[str]:
    subs = _subparsers(_parser())
    words = [a.strip("[]") for a in cmd.argv]
    name = next((w for w in words if w and not w.startswith("-")), None)
    if name is None:
        return []
    if name not in subs:
        return [f"no subcommand {name!r} (there are: {', '.join(subs)})"]
    known = {s for action in subs[name]._actions for s in action.option_strings} | {"--debug"}
    flags = {w.split("=")[0].rstrip(".") for w in words if w.startswith("--") and len(w) > 2}
    return [f"`sagan {name}` has no option {flag}" for flag in sorted(flags - known)]


def _check_train(args: argparse.Namespace) -> list[str]:
    """Resolve the config as `--dry-run` does (config files, --set keys and values), and the model's name."""
    from sagan.commands.train import resolve_config
    from sagan.errors import SaganError
    from sagan.models import list_models

    if args.config and not Path(args.config).is_absolute():
        args = argparse.Namespace(**{**vars(args), "config": str(ROOT / args.config)})
    try:
        cfg = resolve_config(args)
    except SaganError as exc:
        return [f"the train config does not resolve: {exc}"]
    if cfg.model not in list_models():
        return [f"no model {cfg.model!r} (`sagan models` lists them)"]
    return []


def check(cmd: DocCommand) -> list[str]:
    """What is wrong with a doc's command, as messages; empty when the real CLI takes it."""
    problems = _check_referenced_files(cmd)
    if cmd.synopsis:
        return problems + _check_synopsis(cmd)
    args, error = _parse(list(cmd.argv))
    if error:
        return problems + [f"the CLI's parser refuses it: {error}"]
    if args is not None and getattr(args, "command", None) == "train":
        problems += _check_train(args)
    return problems


# --- the tests ------------------------------------------------------------------------------------------------

COMMANDS = doc_commands()


def test_the_docs_show_commands_at_all():
    """The finder finds the README's own commands (a finder that finds nothing would pass everything)."""
    readme = [c for c in COMMANDS if c.where.startswith("README.md")]
    assert any(c.argv[:1] == ("train",) and not c.synopsis for c in readme)
    assert {c.argv[0] for c in COMMANDS if c.argv} >= {"train", "sample", "eval", "attention", "report", "study",
                                                        "explore", "models"}


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.where for c in COMMANDS])
def test_doc_command_is_accepted_by_the_cli(cmd):
    problems = check(cmd)
    assert not problems, f"{cmd}\n  " + "\n  ".join(problems)


_RUNNABLE = [c for c in COMMANDS if not c.synopsis and ("--dry-run" in c.argv or "--help" in c.argv
                                                          or "-h" in c.argv)]


@pytest.mark.parametrize("cmd", _RUNNABLE, ids=[c.where for c in _RUNNABLE])
def test_cheap_doc_commands_run(cmd, capsys, monkeypatch):
    """`--dry-run` and `--help` commands really run, from the repository root, and succeed."""
    from sagan.cli import main

    monkeypatch.chdir(ROOT)
    try:
        code = main(list(cmd.argv))
    except SystemExit as exc:  # --help exits through argparse
        code = exc.code
    assert code == 0, f"{cmd}\n{capsys.readouterr().err}"


@pytest.mark.slow
def test_the_model_table_in_the_docs_is_what_sagan_models_prints(capsys):
    """docs/models.md shows `sagan models`' output; its figures must be today's."""
    from sagan.cli import main

    assert main(["models"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    shown = (ROOT / "docs" / "models.md").read_text()
    table = shown[shown.index("\nmodel "):].split("```")[0].strip().splitlines()
    assert table == printed


def _command(text: str) -> list[tuple[tuple[str, ...], bool]]:
    return [(c.argv, c.synopsis) for c in commands_in_text(text, "t.md")]


def test_the_finder_reads_chains_continuations_env_prefixes_and_module_calls():
    text = """
Prose with `sagan sample runs/x --num 8` inline, and a wrapped `sagan train --max-minutes 20 --out
runs/fmnist` one; `pip install 'sagan[shards]'` is not a sagan command.

```bash
apt-get update && pip install -e . && sagan train --max-minutes 20 --out runs/fmnist   # a comment
OMP_NUM_THREADS=1 sagan eval data/a --against data \\
    --labels data/labels.csv --label-column category
python -m sagan train --out r; python3 -m pytest -q
export X=1
torchrun --nnodes 2 --rdzv-id c \\
  -m sagan train --data cifar10
sagan models | head -3
sagan sample RUN|CHECKPOINT --num 10 [--class K]
```

```python
from sagan import create_model
```
"""
    assert _command(text) == [
        (("train", "--max-minutes", "20", "--out", "runs/fmnist"), False),
        (("eval", "data/a", "--against", "data", "--labels", "data/labels.csv", "--label-column", "category"),
         False),
        (("train", "--out", "r"), False),
        (("train", "--data", "cifar10"), False),
        (("models",), False),
        (("sample", "RUN|CHECKPOINT", "--num", "10", "[--class", "K]"), True),
        (("sample", "runs/x", "--num", "8"), True),
        (("train", "--max-minutes", "20", "--out", "runs/fmnist"), True),
    ]


@pytest.mark.parametrize("text, needle", [
    ("sagan train --max-minutes 20 --made-up-flag 3", "--made-up-flag"),
    ("sagan train --max-min 20", "--max-min"),  # an abbreviation argparse would otherwise accept
    ("sagan frobnicate runs/x", "frobnicate"),
    ("sagan sample runs/x --num many", "many"),
    ("sagan train --config configs/no_such_recipe.yaml", "configs/no_such_recipe.yaml does not exist"),
    ("sagan study studies/no_such_study.yaml", "studies/no_such_study.yaml does not exist"),
    ("sagan study studies/search/no_such_search.yaml", "studies/search/no_such_search.yaml does not exist"),
    ("sagan train --set no_such_key=1", "no_such_key"),
    ("sagan train --model sagan_33", "sagan_33"),
    ("sagan sample RUN|CHECKPOINT --num 10 [--made-up K]", "--made-up"),
    ("sagan frobnicate RUN [--num N]", "frobnicate"),
])
def test_a_command_the_cli_does_not_have_fails_with_the_command_in_the_message(text, needle):
    [cmd] = commands_in_text(f"```bash\n{text}\n```\n", "t.md")
    problems = check(cmd)
    assert problems and needle in "\n".join(problems), problems
    with pytest.raises(AssertionError, match=re.escape(text)):
        test_doc_command_is_accepted_by_the_cli(cmd)


def test_a_made_up_flag_in_inline_code_fails_too():
    [cmd] = commands_in_text("Use `sagan eval RUN --made-up-flag` for that.\n", "t.md")
    assert check(cmd) == ["`sagan eval` has no option --made-up-flag"]


# --- the README's size and the links ---------------------------------------------------------------------------


def test_the_readme_is_a_front_door_not_a_manual():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_keeps_the_install_and_test_commands_that_ci_runs():
    """CI (.ci/run) and users copy these two lines; CI installs the same pinned torch as they do."""
    readme = (ROOT / "README.md").read_text()
    main_job = "sagan train --config configs/fmnist_fast.yaml --max-minutes 20 --out runs/fmnist"
    install = [ln for ln in readme.splitlines() if ln.endswith(main_job)]
    tests = [ln for ln in readme.splitlines() if ln.endswith('pip install -e ".[dev]" && python -m pytest -q')]
    assert len(install) == 1 and install[0].startswith("apt-get update && apt-get install -y dataset-fashion-mnist")
    assert (ROOT / "configs" / "fmnist_fast.yaml").is_file()
    assert len(tests) == 1 and "chromium" in tests[0]
    def pins(text: str) -> set[str]:
        return set(re.findall(r"torch(?:vision)?==[\d.]+", text))

    assert len(pins(install[0])) == 2
    assert pins(install[0]) == pins(tests[0]) == pins((ROOT / ".ci" / "run").read_text())


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    _, prose = _split_markdown(path.read_text())
    seen: dict[str, int] = {}
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.M):
        slug = _slug(m.group(1))
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image outside code, inline or reference-style."""
    _, prose = _split_markdown(path.read_text())
    prose = re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), prose)  # no links inside code spans
    found = []
    for m in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)", prose,
                         re.M):
        found.append((prose.count("\n", 0, m.start()) + 1, m.group(1) or m.group(2)))
    return found


_LINKS = [(p, line, target) for p in DOC_FILES for line, target in links(p)
          if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: lead off the repository


def test_the_link_finder_finds_links_and_images():
    assert any(t == "docs/fmnist_20min_side_fast.png" for p, _, t in _LINKS if p.name == "README.md")
    assert len(_LINKS) > 20


@pytest.mark.parametrize("path, line, target", _LINKS,
                         ids=[f"{p.relative_to(ROOT)}:{line}:{t}" for p, line, t in _LINKS])
def test_relative_link_points_to_an_existing_file(path, line, target):
    file_part, _, anchor = target.partition("#")
    dest = (path.parent / file_part).resolve() if file_part else path
    where = f"{path.relative_to(ROOT)}:{line}: {target}"
    assert dest.exists(), f"{where}: no such file {dest}"
    assert dest == ROOT or ROOT in dest.parents, f"{where}: leads out of the repository"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{where}: no heading #{anchor} in {dest.name}"
