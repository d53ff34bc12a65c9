"""study.html: one self-contained page with the study's tables, score-against-time curves per arm, a sample grid
per arm side by side (same z), and G's attention maps for the arms that have attention."""

from __future__ import annotations

from pathlib import Path

from sagan.errors import SaganError
from sagan.report import escape, html_page, html_table, img_tag
from sagan.study.table import arm_rows, notes, score_keys, versus_rows


def _curves(study: dict) -> str:
    from sagan.viz import plot_curves

    arms = study["summary"]["arms"]
    x_key = "minutes" if "minutes" in study["spec"]["budget"] else "step"
    figures = []
    for key in score_keys(study):
        records = [{"step": point[x_key], name: point["scores"][key]}
                   for name, entry in arms.items() for point in entry.get("curve", {}).values()
                   if key in point["scores"]]
        records.sort(key=lambda r: r["step"])
        png = plot_curves(records, list(arms), key, xlabel=f"{x_key} of training (mean over seeds)")
        if png:
            figures.append(f"<figure>{img_tag(png, key, width=460)}</figure>")
    if not figures:
        return '<p class="muted">No scores yet.</p>'
    return ('<p class="small muted">Each point is the mean over seeds of the runs scored at that fraction of the '
            f'budget.</p><div class="grid">{"".join(figures)}</div>')


def _first_run(out: Path, study: dict, arm: str) -> Path | None:
    """The arm's first finished seed whose run folder is here (a run kept only in the record has no weights)."""
    from sagan.checkpoint import list_checkpoints

    for seed in study["summary"]["arms"][arm].get("seeds_done", []):
        run = out / "runs" / arm / f"seed_{seed}"
        if run.is_dir() and list_checkpoints(run):
            return run
    return None


def _samples(out: Path, study: dict) -> str:
    from sagan.checkpoint import load_generator
    from sagan.sampling import generate
    from sagan.viz import image_grid

    figures, names = [], None
    for arm in study["summary"]["arms"]:
        run = _first_run(out, study, arm)
        if run is None:
            continue
        generator, info = load_generator(run)
        names = names or info.get("class_names")
        png = image_grid(generate(generator, 32, seed=0), nrow=8)
        figures.append(f'<figure>{img_tag(png, arm, css="pixel", width=300)}<figcaption>{escape(arm)}, '
                       f'{escape(run.name)}, step {escape(info.get("step"))}</figcaption></figure>')
    if not figures:
        return '<p class="muted">No finished run yet.</p>'
    classes = f" (the classes in turn, row by row: {escape(', '.join(names))})" if names else ""
    return ('<p class="small muted">G_ema of each arm\'s first finished seed, at the end of its budget; the same '
            f'32 latents (seed 0) and labels{classes} in every grid.</p><div class="grid">{"".join(figures)}</div>')


def _attention(out: Path, study: dict) -> str:
    from sagan.viz import attention_study, draw_attention

    figures = []
    for arm in study["summary"]["arms"]:
        run = _first_run(out, study, arm)
        if run is None:
            continue
        try:
            maps = attention_study(run, grid=3, seed=0, num=2, nets=("G",))
        except SaganError:
            continue  # an arm without attention in G
        png = draw_attention(maps.images, maps.layers, maps.points, title=f"{arm}: {maps.title()}",
                             image_labels=maps.image_labels)
        figures.append(f"<figure>{img_tag(png, f'{arm} attention')}</figure>")
    if not figures:
        return '<p class="muted">No arm with attention in G has finished.</p>'
    return ('<p class="small muted">Where each marked query point of a generated image attends, in every attention '
            "layer of G (first finished seed of each arm).</p>" + "".join(figures))


def write_page(study: dict, out: Path, path: Path) -> Path:
    """Write study.html for a study.json mapping whose runs are under `out`."""
    name = study["spec"]["name"]
    sections = [
        ("tables", "Results", "".join(f"<p class='small'>{escape(n)}</p>" for n in notes(study))
         + html_table(*arm_rows(study)) + "<h3>Against the baseline</h3>" + html_table(*versus_rows(study))),
        ("curves", "Scores against training time", _curves(study)),
        ("samples", "Samples per arm", _samples(out, study)),
        ("attention", "Attention maps of G", _attention(out, study)),
    ]
    page = html_page(f"sagan study: {name}", f" from {out / 'study.json'}", sections)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise SaganError(f"cannot write {path}: {exc.strerror}") from None
    return path
