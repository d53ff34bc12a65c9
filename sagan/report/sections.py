"""The run report's sections: summary and alarms, sample grids, training curves, attention maps, scores,
configuration; each an HTML fragment built from what the run folder holds."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

from sagan.errors import SaganError
from sagan.report.html import escape, img_tag

_STEP_PNG = re.compile(r"step_(\d+)\.png$")


def _png_file(path: Path) -> tuple[bytes, tuple[int, int]] | None:
    """A PNG file re-encoded through PIL (so a torn file is skipped, not embedded broken) and its size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue(), image.size
    except (OSError, UnidentifiedImageError):
        return None


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if v == 0 or 1e-3 <= abs(v) < 1e6 else f"{v:.3e}"
    return str(v)


# ----------------------------------------------------------------------------------------------------------
# Sections


def _samples_section(run: Path, max_grids: int, class_names: list[str] | None = None) -> str:
    files = sorted((p for p in (run / "samples").glob("step_*.png") if _STEP_PNG.search(p.name)),
                   key=lambda p: int(_STEP_PNG.search(p.name).group(1)))
    if len(files) > max_grids:  # evenly spaced, always the first and the last
        picks = sorted({round(i * (len(files) - 1) / (max_grids - 1)) for i in range(max_grids)})
        files = [files[i] for i in picks]
    final = run / "samples" / "final.png"
    entries = [(f, f"step {int(_STEP_PNG.search(f.name).group(1))}") for f in files]
    if final.is_file():
        entries.append((final, "final (G_ema)"))
    figures = []
    for path, caption in entries:
        got = _png_file(path)
        if got is None:
            continue
        png, (w, _) = got
        width = max(w, min(2 * w, 300))  # small grids drawn larger, pixel-exact
        figures.append(f"<figure>{img_tag(png, caption, 'pixel', width)}"
                       f"<figcaption>{escape(caption)}</figcaption></figure>")
    if not figures:
        return '<p class="muted">No sample grids in samples/ yet.</p>'
    rows = (f" Row by row, the classes {', '.join(class_names[:10])}" + (" (the first 10)" if len(class_names) > 10
                                                                         else "") + "." if class_names else "")
    return (f'<p class="small muted">The same fixed latents (and labels) at each step, drawn by G_ema.'
            f'{escape(rows)}</p>'
            f'<div class="grid">{"".join(figures)}</div>')


def _curve_specs(train: list[dict]) -> list[tuple[str, list[str], str, dict]]:
    keys = sorted({k for r in train for k in r})
    gammas = [k for k in keys if k.startswith("gamma/")]
    sigmas = [k for k in keys if k.startswith("sigma/")]
    smooth = 5 if len(train) > 50 else 0
    return [
        ("Losses", ["loss_d", "loss_g"], "loss", {"smooth": smooth}),
        ("Mean D output on real and fake", ["d_real", "d_fake"], "D(x)", {"smooth": smooth}),
        ("Attention gain gamma", gammas, "gamma", {}),
        ("Spectral norm: sigma estimates", sigmas, "sigma", {}),
        ("Gradient norms", ["grad_norm_g", "grad_norm_d"], "L2 norm", {"smooth": smooth, "log_y": True}),
        ("Sample diversity (fixed batch)", ["diversity"], "mean pairwise L2 / pixel", {}),
        ("Throughput", ["images_per_sec"], "real images / s", {}),
        ("Learning rates", ["lr_g", "lr_d"], "lr", {}),
        ("Augmentation: p, and ADA's r_t = E[sign D(real)] (target 0.6)", ["augment_p", "ada_rt"], "", {}),
    ]


def _curves_section(train: list[dict], alarm_steps: list[int]) -> str:
    from sagan.viz import plot_curves

    if not train:
        return '<p class="muted">No training records in metrics.jsonl yet.</p>'
    figures = []
    for title, keys, ylabel, options in _curve_specs(train):
        png = plot_curves(train, keys, title, ylabel=ylabel, events=alarm_steps, **options)
        if png is not None:
            figures.append(f"<figure>{img_tag(png, title, 'wide', 520)}</figure>")
    note = " Dashed red lines: collapse alarms." if alarm_steps else ""
    return (f'<p class="small muted">From metrics.jsonl ({len(train)} training records; faint: raw, bold: '
            f'moving average where there are many).{note}</p><div class="grid">{"".join(figures)}</div>')


def _alarms_section(alarms: list[dict]) -> str:
    if not alarms:
        return '<div class="ok">No collapse alarm was raised during training.</div>'
    return "".join(f'<div class="alarm"><b>step {escape(a.get("step"))}</b>: {escape(a.get("event", ""))}</div>'
                   for a in alarms)


def _attention_section(run: Path, seed: int, grid: int) -> str:
    from sagan.checkpoint import list_checkpoints
    from sagan.viz import attention_study, draw_attention, query_spread

    if not list_checkpoints(run) and not (run / "generator.safetensors").is_file():
        return '<p class="muted">No checkpoint yet: no attention maps.</p>'
    try:
        study = attention_study(run if list_checkpoints(run) else run / "generator.safetensors", grid=grid,
                                seed=seed, num=2)
    except SaganError as exc:
        return f'<p class="muted">No attention maps: {escape(exc)}</p>'
    png = draw_attention(study.images, study.layers, study.points, title=study.title(),
                         image_labels=study.image_labels)
    names = ", ".join(f"{m.name} (maps of different points differ by {query_spread(m.maps):.2f} on average, "
                      "total variation)" for m in study.layers)
    return (f'<p class="small muted">{escape(study.title())}. Layers {escape(names)}. '
            "G: the generator's block at that "
            "feature resolution; D: the discriminator's, seeing the same generated images. Each map is where one "
            "query point (marked) attends, upsampled from the half-resolution key grid and stretched to its own "
            "range; \"peak Nx uniform\" says how concentrated it is. Same figure from the command line: "
            f"<code>sagan attention {escape(run)} --seed {seed} --num 2 --grid {grid}</code>.</p>"
            f"{img_tag(png, 'attention maps')}")


_MAIN_SCORE = re.compile(r"^(fid|fd|kid|is|precision|recall|density|coverage)(_[a-z0-9]+)?$")


def _score_columns(records: Sequence[dict]) -> list[str]:
    keys = []
    for r in records:
        for k in r:
            if k not in keys and _MAIN_SCORE.match(k) and isinstance(r[k], (int, float)):
                keys.append(k)
    return keys


def _with_std(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, (int, float)):
        return ""
    std = record.get(key + "_std")
    return _fmt(value) + (f" ± {_fmt(std)}" if isinstance(std, (int, float)) else "")


def _eval_files(run: Path) -> list[Path]:
    found = set(run.glob("eval-*.json")) | set(run.glob("*.eval-*.json"))
    found |= set((run / "checkpoints").glob("*.eval-*.json")) if (run / "checkpoints").is_dir() else set()
    found |= set(run.parent.glob(f"{run.name}.eval-*.json"))
    return sorted(found)


def _provenance_table(prov: dict) -> str:
    rows = []
    for k, v in prov.items():
        if k == "metrics":
            continue
        text = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
        rows.append(f"<tr><th>{escape(k)}</th><td>{escape(text)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _evaluation_section(run: Path, evals: list[dict], config: dict) -> str:
    from sagan.viz import plot_curves

    parts = []
    if evals:
        cols = _score_columns(evals)
        head = "".join(f"<th>{escape(c)}</th>" for c in cols)
        body = "".join("<tr><td class='num'>" + escape(r.get("step")) + "</td>"
                       + "".join(f"<td class='num'>{escape(_with_std(r, c))}</td>" for c in cols) + "</tr>"
                       for r in evals)
        extractor = "the shipped Fashion-MNIST classifier (suffix _fmnist)" if any(
            c.endswith("_fmnist") for c in cols) else "Inception-v3 (no suffix)"
        provenance = (f"Scored during training by <code>sagan train</code> every {escape(config.get('eval_every'))} "
                      f"steps: {escape(config.get('eval_num'))} images of G_ema (seed {escape(config.get('seed'))}) "
                      f"against {escape(config.get('data'))} (its test split where it has one), features from "
                      f"{extractor}. Small samples bias Frechet distances upwards: compare these numbers with each "
                      "other, not with published 50k-sample scores.")
        parts.append(f"<h3>During training</h3><p class='small'>{provenance}</p>"
                     f"<table><tr><th>step</th>{head}</tr>{body}</table>")
        dists = [c for c in cols if c.startswith(("fd", "fid"))]
        png = plot_curves(evals, dists, "Frechet distance during training", ylabel="lower is better") if dists else None
        if png is not None:
            parts.append(img_tag(png, "Frechet distance during training", "wide", 520))
    for path in _eval_files(run):
        try:
            record = json.loads(path.read_text())
            scores, prov = record["scores"], record["provenance"]
        except (OSError, ValueError, KeyError, TypeError):
            parts.append(f"<p class='muted'>{escape(path.name)}: not a readable sagan eval record.</p>")
            continue
        how = prov.get("metrics", {}) if isinstance(prov.get("metrics"), dict) else {}
        rows = "".join(f"<tr><td>{escape(k)}</td><td class='num'>{escape(_with_std(scores, k))}</td>"
                       f"<td class='small'>{escape(how.get(k, ''))}</td></tr>"
                       for k in _score_columns([scores]))
        parts.append(f"<h3>{escape(path.name)} (<code>sagan eval</code>)</h3>"
                     f"<table><tr><th>score</th><th>value</th><th>how</th></tr>{rows}</table>"
                     f"<details><summary>provenance</summary>{_provenance_table(prov)}</details>")
    if not parts:
        return ("<p class='muted'>No evaluation yet: train with <code>--set eval_every=N</code>, or run "
                f"<code>sagan eval {escape(run)}</code> (it writes its record into the run folder).</p>")
    return "".join(parts)


def _model_config(run: Path) -> tuple[dict | None, str]:
    """The run's ModelConfig as a dict, from the exported generator or (during training) the newest checkpoint."""
    from sagan.checkpoint import latest_checkpoint

    meta = run / "generator.json"
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("model"), "generator.json"
        except ValueError:
            pass
    try:
        found = latest_checkpoint(run)
    except SaganError:
        found = None
    if found is None:
        return None, ""
    path, state = found
    return state.get("model"), f"checkpoints/{path.name}"


def _config_section(run: Path) -> tuple[str, dict]:
    import yaml

    parts, config = [], {}
    path = run / "config.yaml"
    if path.is_file():
        text = path.read_text()
        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            config = {}
        parts.append(f"<div><h3>Training config (config.yaml)</h3><pre>{escape(text)}</pre></div>")
    model, source = _model_config(run)
    if model:
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(json.dumps(v) if isinstance(v, list) else v)}</td></tr>"
                       for k, v in model.items())
        parts.append(f"<div><h3>Model ({escape(source)})</h3><table>{rows}</table></div>")
    if not parts:
        return "<p class='muted'>No config.yaml in the run folder.</p>", config
    return f'<div class="grid">{"".join(parts)}</div>', config


def _class_names(run: Path, config: dict) -> list[str] | None:
    """The run's class names in index order, from config.yaml or the exported generator; None if not recorded."""
    if config.get("class_names") is not None:
        return list(config["class_names"])
    try:
        return json.loads((run / "generator.json").read_text()).get("class_names")
    except (OSError, ValueError, AttributeError):
        return None


def _summary(run: Path, train: list[dict], config: dict, class_names: list[str] | None = None) -> str:
    rows = [("run folder", str(run.resolve())), ("model", config.get("model", "?")),
            ("data", config.get("data", "?"))]
    if class_names:
        rows.append(("classes", f"{len(class_names)}: {', '.join(class_names)}"))
    if train:
        last = train[-1]
        rows.append(("last logged step", f"{last['step']} of max {config.get('max_steps', '?')}"))
        if len(train) > 1 and isinstance(train[0].get("time"), (int, float)):
            rows.append(("logged time span", f"{(last['time'] - train[0]['time']) / 60:.1f} min"))
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "diversity", "images_per_sec"):
            if isinstance(last.get(key), (int, float)):
                rows.append((f"last {key}", _fmt(last[key])))
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows) + "</table>"


def _explorer_link(explorer: Path) -> str:
    """A link to the `sagan explore` page when one sits beside the report."""
    if not explorer.is_file():
        return ""
    return (f'<p class="ok"><a href="{escape(explorer.name)}">'
            f'Open the attention explorer ({escape(explorer.name)})</a>: '
            "point at any pixel of a generated or real image and see where every attention layer of G and D "
            "looks (<code>sagan explore</code>).</p>")
