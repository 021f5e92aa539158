"""The claims page (``claims.md``), its two plots and the raw document (``claims.json``).

Everything here renders a claims document and nothing else, so ``--report-only`` re-renders the
same page from the JSON alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .. import fileio
from ..tables import markdown_table
from .front_report import PLOT_FRONTS, fronts_section, latency_label, plot_fronts, trained_on
from .noise import json_number, mean_std_text, percent
from .studies import json_name, studies_section
from .verdicts import seeds_run, with_role

JSON_FILE, MARKDOWN_FILE = json_name("full"), "claims.md"
PLOT_MAX_LEVEL = "img/claims_miou_vs_max_level.png"
CITYSCAPES_SIZE = (1024, 2048)  # the dataset's native size, for the level ladder


RESULTS_HEADERS = ("experiment", "mIoU, precise BN (%)", "mIoU, running BN (%)", "context mIoU (%)",
                   "road↔sidewalk swaps (%)", "params (M)", "GMACs", "deployed latency (ms)", "train s/run")


def results_table(doc: dict) -> str:
    rows = []
    for name, exp in doc["experiments"].items():
        s, c = exp["summary"], exp["costs"]
        scores = [mean_std_text(s, key) for key in ("mIoU", "running_bn_mIoU", "context_mIoU", "context_swap_rate")]
        rows.append([f"{exp['label']} (`{name}`)", *scores, f"{c['params_M']:.2f}", f"{c['GMACs']:.3f}",
                     f"{c['latency_ms']:.1f}", f"{s['train_seconds_mean']:.0f}"])
    return markdown_table(RESULTS_HEADERS, rows)


def per_seed_table(doc: dict) -> str:
    seeds = seeds_run(doc)
    rows = []
    for name, exp in doc["experiments"].items():
        by_seed = {r["seed"]: r for r in exp["runs"]}
        cells = [" / ".join(percent(r[k]) for k in ("mIoU", "running_bn_mIoU", "context_mIoU")) if (r := by_seed.get(s))
                 else "-" for s in seeds]
        rows.append([f"`{name}`", *cells])
    return markdown_table(["experiment"] + [f"seed {s}: precise / running / context" for s in seeds], rows)


def _delta(cmp: dict) -> str:
    delta = "n/a" if cmp["delta"] is None or cmp["delta"] != cmp["delta"] else f"{100 * cmp['delta']:+.1f}"
    return f"{delta} points (run-to-run noise ±{percent(cmp['noise'])}: {cmp['verdict']})"


def verdict_lines(doc: dict) -> list[str]:
    lines = [] if doc["claims"] else ["No claim could be judged: the run lacks the experiments a claim compares."]
    if len(seeds_run(doc)) < 2:
        lines += ["With one seed there is no run-to-run noise to judge against: every difference counts, so "
                  "these verdicts are a smoke test, not evidence.", ""]
    for claim in doc["claims"]:
        status = "**reproduced**" if claim["reproduced"] else "**not reproduced**"
        lines.append(f"{claim['claim']}. *{claim['text']}* — {status} in our setting.")
        for cmp in claim["comparisons"]:
            lines.append(f"   - {cmp['what']}: mIoU {_delta(cmp['mIoU'])}; context mIoU {_delta(cmp['context_mIoU'])}.")
        ratio = claim.get("cost_ratio")
        if ratio:
            lines.append(f"   - cost, `{ratio['of']}` / `{ratio['over']}`: {ratio['GMACs']:.2f}x GMACs, "
                         f"{ratio['latency']:.2f}x deployed latency.")
        if claim.get("front"):
            lines.append(f"   - {front_line(claim['front'])} (the verdict; see *Fronts*).")
    return lines


def front_line(front: dict) -> str:
    """One line for a claim judged on the fronts: mIoU and context mIoU at matched latency."""
    parts = []
    for key, what in (("mIoU", "mIoU"), ("context_mIoU", "context mIoU")):
        cmp = front[key]
        deltas = ", ".join(f"{100 * m['delta']:+.1f}±{percent(m['noise'])} at {m['latency_ms']:.0f} ms"
                           for m in cmp["matches"])
        parts.append(f"{what} {cmp['verdict']} ({deltas or 'no matched latency'})")
    return f"family `{front['mIoU']['a']}` minus `{front['mIoU']['b']}` at matched latency: " + "; ".join(parts)


def bn_lines(doc: dict) -> list[str]:
    check, settings = doc["bn_check"], doc["settings"]
    status = "within" if check["within"] else "**beyond**"
    return [f"Running-BN against precise-BN mIoU: the largest gap of any run is {check['max_gap_points']:.1f} points "
            f"({check['worst_run']}), {status} the {check['tolerance_points']:g}-point tolerance of the manifest "
            f"({settings['bn_batches']} precise-BN batches)."]


def level_ladder(size: tuple[int, int], levels=(5, 7, 9)) -> str:
    """The P-level map sizes of an input, e.g. '16x32 / 4x8 / 1x2' for 512x1024."""
    return " / ".join("{}x{}".format(*[-(-side // 2**level) for side in size]) for level in levels)


def padding_text(size: tuple[int, int], canvases: dict[str, list[int]]) -> str:
    """What padding does to the experiments at ``size``, from each one's padded canvas."""
    height, width = size
    padded = {name: canvas for name, canvas in canvases.items() if tuple(canvas) != (height, width)}
    if not padded:
        return f"No model pads the {height}x{width} images: every experiment computes on the same canvas."
    parts = [f"`{name}` pads {height}x{width} to a {c[0]}x{c[1]} canvas ({c[0] * c[1] / (height * width):.1f}x the "
             "pixels)" for name, c in padded.items()]
    return "Each model pads its input to a multiple of its input stride: " + "; ".join(parts) + \
        ". It shows in their GMACs and latency."


SETTING_TEXT = """\
## What is the paper's and what is ours

- **The paper's** (Meng et al., *Revisiting Multi-Scale Feature Fusion for Semantic
  Segmentation*, arXiv 2203.12683): the three claims below, made on Cityscapes and ADE20K
  with ImageNet-pretrained EfficientNet backbones and long GPU training. The only numbers
  of the paper we quote anywhere are ESeg-Lite-S 76.0 % mIoU at 189 FPS, ESeg-Lite-L 80.1 % at
  79 FPS and FasterSeg 73.1 % at 170 FPS (Cityscapes); none of them is comparable to this page.
- **Ours**: every number on this page. The experiment design, the DeepLabV3+ implementation
  (`eseg.models.deeplab`, written for this comparison), the budget and the dataset are our own.

How our setting differs from the paper's:

- **synthetic data**: the embedded procedural street scenes (`eseg.data.synthetic`, 8 classes),
  built so that road and sidewalk have the same local appearance and differ only by context: a
  ground column is sidewalk when a building stands above it at the horizon, which lies up to
  ~60 % of the image height ({cue_px} px here) above the lowest ground pixels. The "context
  classes" columns score exactly those two classes;
- **CPU and a tiny budget**: {threads} CPU threads, a few minutes per run, batch {batch}, {steps} steps,
  {size_h}x{size_w} images; small models on the {backbones} backbone (see *Models* below);
- **no pretraining**: every backbone starts from random weights.
"""


def ladder_text(doc: dict, size: tuple[int, int]) -> str:
    exps = doc["experiments"]
    levels = sorted({exps[n]["model"]["max_level"] for n in with_role(doc, "max_level") if "max_level" in exps[n]["model"]})
    padding = padding_text(size, {name: exp["costs"]["canvas"] for name, exp in exps.items()})
    if not levels:
        return padding
    names = " / ".join(f"P{level}" for level in levels)
    return (f"Why max_level can matter at this size: {names} are {level_ladder(size, levels)} maps at "
            f"{size[0]}x{size[1]}, against {level_ladder(CITYSCAPES_SIZE, levels)} at Cityscapes' full "
            f"{CITYSCAPES_SIZE[0]}x{CITYSCAPES_SIZE[1]} (the paper's evaluation size is not published; this is the "
            f"dataset's native size). {padding}")


def header_section(doc: dict, out_dir: str) -> list[str]:
    env = doc["environment"]
    return [
        "# ESeg's claims in miniature",
        "",
        "Generated by `eseg reproduce` (`src/eseg/reproduce/`) from "
        f"[`{JSON_FILE}`]({JSON_FILE}); re-render with `eseg reproduce --report-only --out {out_dir}`.",
        "",
        f"Command: `{doc['command']}` — {len(seeds_run(doc))} seed(s) x {len(doc['experiments'])} experiments, "
        f"{doc['total_minutes']:.1f} min for this command on {trained_on(env)}, {env['time']}"
        + (f"; the training of all its runs, earlier parts included, adds up to {doc['train_minutes']:.0f} min of "
           "one process each." if "train_minutes" in doc else "."),
        "",
    ]


def setting_section(doc: dict) -> list[str]:
    from ..data.synthetic import HORIZON_RANGE  # imports torch: only when rendering

    settings = doc["settings"]
    size = tuple(settings["image_size"])
    backbones = sorted({exp["model"].get("backbone", "?") for exp in doc["experiments"].values()})
    text = SETTING_TEXT.format(batch=settings["batch_size"], steps=settings["steps"], size_h=size[0], size_w=size[1],
                               backbones=" / ".join(f"`{b}`" for b in backbones),
                               threads=doc["environment"]["threads"], cue_px=round((1 - HORIZON_RANGE[0]) * size[0]))
    return [text, ladder_text(doc, size), ""]


def verdict_section(doc: dict) -> list[str]:
    return [
        "## Verdicts",
        "",
        *verdict_lines(doc),
        "",
        "Every verdict compares precise-BN scores. A difference is called *higher*/*lower* only when it exceeds "
        "the standard deviation of the difference of two single runs, sqrt(std_a² + std_b²); otherwise "
        "*within noise*.",
        "",
        *bn_lines(doc),
        "",
    ]


def results_section(doc: dict) -> list[str]:
    settings = doc["settings"]
    size = settings["image_size"]
    return [
        "## Results",
        "",
        f"Mean ± std over seeds {seeds_run(doc)} of the validation metrics of the final weights (no checkpoint "
        f"selection; {settings['val_images']} synthetic validation images at {size[0]}x{size[1]}), each run scored "
        "twice on the same images: *running BN* is eval mode with the model's own (bias-corrected, "
        "`eseg.models.norm`) running statistics; *precise BN* recomputes them first over "
        f"{settings['bn_batches']} training batches (`eseg.engine.bn.recompute_bn_statistics`, another seed than "
        "training's), identically for every experiment. All other columns and the verdicts are precise BN. "
        "*context mIoU* is the mean IoU of road and sidewalk; *swaps* is the share of road/sidewalk pixels "
        "predicted as the other one. GMACs (`eseg.flops.count_macs`) and the deployed latency are at the "
        "validation image size; the latency is the median of "
        f"{settings['latency_runs']} interleaved rounds (`eseg.benchmark.timing.interleaved_times`) of the default "
        f"`eseg export` graph of the seed-0 weights, image to mask ({latency_label(doc)}).",
        "",
        results_table(doc),
        "",
        "Per seed (mIoU with precise BN / with running BN / context mIoU with precise BN, %):",
        "",
        per_seed_table(doc),
        "",
        f"![mIoU vs max level]({PLOT_MAX_LEVEL})",
        "",
    ]


BUDGET_KEYS = ("steps", "batch_size", "crop_size", "optimizer", "lr", "schedule", "warmup_steps", "image_size",
               "train_images", "val_images", "bn_batches")


def budget_section(doc: dict) -> list[str]:
    settings = doc["settings"]
    models = [f"- `{name}` ({exp['label']}, `{exp['config']}`): "
              f"`{yaml.safe_dump(exp['model'], sort_keys=False, default_flow_style=True, width=1000).strip()}`"
              for name, exp in doc["experiments"].items()]
    return [
        "## Shared budget",
        "",
        f"Every run: the experiment's file in `{settings['config_dir']}` (listed in its `experiments.yaml`, all "
        "sharing `base.yaml`), the `" + settings["preset"] + "` preset, train.seed = the seed. Overrides on top: "
        f"`{' '.join(settings['overrides']) or 'none'}`.",
        "",
        "```yaml",
        yaml.safe_dump({k: settings[k] for k in BUDGET_KEYS}, sort_keys=False, default_flow_style=None).rstrip(),
        "```",
        "",
        "### Models",
        "",
        *models,
        "",
    ]


def render_markdown(doc: dict, out_dir: str | Path) -> str:
    """The page, for the folder ``out_dir`` that holds it and its JSON."""
    parts = header_section(doc, str(out_dir)) + setting_section(doc) + verdict_section(doc) + fronts_section(doc)
    parts += studies_section(out_dir, doc) + results_section(doc) + budget_section(doc)
    if doc.get("notes"):
        parts += ["## Notes", "", doc["notes"], ""]
    return "\n".join(parts)


# -- plots -----------------------------------------------------------------------------------------


def _errorbar(ax, exps: dict, names: list[str], key: str, xs: list[float], **style) -> None:
    ys = [100 * json_number(exps[n]["summary"][f"{key}_mean"]) for n in names]
    es = [100 * json_number(exps[n]["summary"][f"{key}_std"]) for n in names]
    ax.errorbar(xs, ys, yerr=es, capsize=4, **style)


def plot_max_level(doc: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    from ..viz import save_figure

    exps = doc["experiments"]
    level = lambda n: exps[n]["model"].get("max_level")  # noqa: E731
    series = sorted((n for n in with_role(doc, "max_level") if level(n)), key=level)
    fpn = [n for n in with_role(doc, "fpn") if level(n)]
    fig = Figure(figsize=(6, 4), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for key, what, color in (("mIoU", "mIoU (all classes)", "tab:blue"),
                             ("context_mIoU", "context mIoU (road, sidewalk)", "tab:orange")):
        if series:
            _errorbar(ax, exps, series, key, [level(n) for n in series], marker="o", color=color,
                      label=f"ESeg max-level series: {what}")
        for name in fpn:
            _errorbar(ax, exps, [name], key, [level(name)], marker="s", color=color, linestyle="none", mfc="white",
                      label=f"{exps[name]['label']}: {what}")
        for name in with_role(doc, "deeplab"):
            mean = json_number(exps[name]["summary"][f"{key}_mean"])
            ax.axhline(100 * mean, color=color, linestyle="--", linewidth=1, label=f"{exps[name]['label']}: {what}")
    ax.set_xlabel("max pyramid level (P_max, stride 2^max)")
    ax.set_ylabel("validation IoU, precise BN (%)")
    ax.set_xticks(range(min(map(level, series + fpn), default=5), max(map(level, series + fpn), default=9) + 1))
    ax.set_title(f"mIoU vs max level (mean ± std, {len(seeds_run(doc))} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def write_reports(doc: dict, out_dir: str | Path, preset: str = "full") -> dict[str, Path]:
    """The preset's JSON (``claims.json``, or a study's ``claims_<preset>.json``), then the page and
    plots rendered from what ``claims.json`` holds (NaN written as null) and from the studies
    beside it, so ``--report-only`` renders the very same page."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / json_name(preset)}
    fileio.write_json(paths["json"], doc)
    if not (out_dir / JSON_FILE).is_file():  # a study before the main run: the page waits for it
        return paths
    doc = json.loads((out_dir / JSON_FILE).read_text(encoding="utf-8"))
    paths.update(markdown=out_dir / MARKDOWN_FILE, max_level_plot=out_dir / PLOT_MAX_LEVEL,
                 fronts_plot=out_dir / PLOT_FRONTS)
    plot_max_level(doc, paths["max_level_plot"])
    plot_fronts(doc, paths["fronts_plot"])
    fileio.write_text(paths["markdown"], render_markdown(doc, out_dir))
    return paths
