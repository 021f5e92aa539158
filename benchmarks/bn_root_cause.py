"""Why eval-mode (running-BN) mIoU collapses after a short run, BiFPN far more than plain FPN.

Trains the claims models (configs/claims/eseg_p9.yaml: BiFPN P2-P9; fpn_p9.yaml: plain FPN P2-P9)
with the existing trainer, recording every BN layer's batch statistics at every step, then measures:

1. mIoU in eval mode with the running statistics vs after precise BN (update_bn, 25 batches);
2. per BN layer, the error of the running statistics against the precise ones, by group and level,
   with the part due to the initial running_mean=0 / running_var=1 (weight (1-m)^T);
3. how the error propagates: precise statistics swapped in group by group, and the eval-mode
   activation drift per layer against the BN depth (BN layers in series from the input);
4. why BiFPN suffers more (BN depth of the longest path, pre-BN variances, fusion weights,
   batch-statistic noise at the tiny top levels);
5. the same weights trained with eseg.models.norm.debias_batchnorm applied.

Running statistics never influence training (train-mode BN normalizes with batch statistics), so
the recorded batch statistics also give the running statistics of any other schedule (EMA 0.1,
bias-corrected) for the same weights; the script checks this against the trained buffers.

    .venv/bin/python benchmarks/bn_root_cause.py --steps 150 --out /tmp/bn_root_cause

Four 150-step runs (plain and debiased, BiFPN and FPN) take ~5 min each on one thread, the
analysis ~12 min more; --reuse analyses the runs cached in --out again without training.
``--configs`` points at another claims folder (e.g. an older checkout's, to compare).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eseg.models.norm import batchnorm_layers, debias_batchnorm, remove_debias
from eseg.tables import markdown_table

MODELS = {"bifpn": "eseg_p9.yaml", "fpn": "fpn_p9.yaml"}  # in --configs
GROUPS = ("backbone", "projection", "top-down", "bottom-up", "head")
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# the trainer: the only code that knows its API (it may change shape)


def make_trainer(config: Path, out: Path, steps: int):
    """The claims config with a short budget and no pictures; the model is built, not trained."""
    from eseg.config import load_config
    from eseg.engine.trainer import Trainer
    from eseg.rundir import prepare_run_dir

    # the batch-norm issue's models: BiFPN / FPN over all of P2-P9 and the weighted head, as eseg 0.1 built them
    # (the shipped variants now fuse P3-P9 and add P2 in a progressive head: 12 fusion nodes, not 28)
    overrides = [f"train.steps={steps}", "eval.max_images=8", "eval.num_predictions=0", "eval.num_overlays=0",
                 f"run.out={out}", "model.fpn_min_level=2", "model.head_kind=weighted"]
    # no precise BN inside fit: the running statistics are what is measured
    prepare_run_dir(out, resume=False, overwrite=True)
    return Trainer(load_config(str(config), overrides + ["train.precise_bn_batches=0"]), out)


def fit(trainer) -> float:
    """Train to the configured steps; returns the trainer's own (running-BN, 8 images) mIoU in %."""
    return 100.0 * trainer.fit()["mIoU"]


def training_batches(trainer, start_step: int, count: int) -> list[torch.Tensor]:
    """``count`` training batches from step ``start_step`` on (the precise-BN batches of eseg reproduce)."""
    batches = iter(trainer.train_loader(start_step=start_step))
    return [next(batches)["image"] for _ in range(count)]


def miou(model: nn.Module, val_set, count: int) -> float:
    """The shared evaluator on the first ``count`` validation images, in %."""
    from eseg.data.meta import subset
    from eseg.evaluation import evaluate_model

    first = subset(val_set, range(min(count, len(val_set))))
    metrics = evaluate_model(model.eval(), first, batch_size=4, device="cpu")
    return 100.0 * metrics["mIoU"]


# --------------------------------------------------------------------------------------------
# batch statistics and running-statistic schedules


class BatchStatRecorder:
    """Per BN layer, the batch mean and unbiased variance BN's own update sees, at every training step."""

    def __init__(self, model: nn.Module) -> None:
        self.means: dict[str, list[torch.Tensor]] = {}
        self.vars: dict[str, list[torch.Tensor]] = {}
        self.handles = [module.register_forward_pre_hook(self._hook(name)) for name, module in batchnorm_layers(model)]

    def _hook(self, name: str):
        def hook(module, args):
            if module.training:
                with torch.no_grad():
                    var, mean = torch.var_mean(args[0].detach().float(), dim=(0, 2, 3), correction=1)
                self.means.setdefault(name, []).append(mean.double())
                self.vars.setdefault(name, []).append(var.double())
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def trajectory(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {n: (torch.stack(self.means[n]).numpy(), torch.stack(self.vars[n]).numpy()) for n in self.means}


def simulate(mean_t: np.ndarray, var_t: np.ndarray, momentum: float, debias: bool,
             horizon: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Running statistics after the recorded (T, C) batch statistics, from PyTorch's 0 / 1.
    ``debias``: factor max(m, min(1, horizon/t)), eseg.models.norm's rule with any horizon (it ships
    HORIZON = 5; 1 is the cumulative average until 1/m steps), so the study can compare them."""
    mean, var = np.zeros(mean_t.shape[1]), np.ones(var_t.shape[1])
    for t in range(1, len(mean_t) + 1):
        a = max(momentum, min(1.0, horizon / t)) if debias else momentum
        mean = (1 - a) * mean + a * mean_t[t - 1]
        var = (1 - a) * var + a * var_t[t - 1]
    return mean, var


def bn_stats(model: nn.Module) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {n: (m.running_mean.double().numpy().copy(), m.running_var.double().numpy().copy())
            for n, m in batchnorm_layers(model)}


def load_bn_stats(model: nn.Module, stats: dict) -> nn.Module:
    """A copy of ``model`` whose BN running statistics come from ``stats`` (name -> (mean, var))."""
    model = copy.deepcopy(model)
    for name, module in batchnorm_layers(model):
        if name in stats:
            module.running_mean.copy_(torch.from_numpy(stats[name][0]))
            module.running_var.copy_(torch.from_numpy(stats[name][1]))
    return model.eval()


def precise_stats(model: nn.Module, batches: list[torch.Tensor]) -> dict:
    """Precise BN (torch.optim.swa_utils.update_bn) on a copy; the model is untouched."""
    clone = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(batches, clone)
    return bn_stats(clone)


def precise_sets(run: dict, start: int, count: int, chunk: int) -> dict[str, dict]:
    """Precise BN over ``count`` training batches from step ``start``, and over each ``chunk`` of
    them: how much precise BN itself varies with the batches it sees. One train-mode pass records
    every batch's statistics; update_bn's estimate over a subset is their plain average."""
    cache = run["out"] / f"precise_sets_{start}_{count}.pt"
    if cache.is_file():
        traj = torch.load(cache, weights_only=False)
    else:
        clone = copy.deepcopy(run["model"]).train()
        recorder = BatchStatRecorder(clone)
        with torch.no_grad():
            for batch in run["batches"](start, count):
                clone(batch)
        recorder.remove()
        traj = recorder.trajectory()
        torch.save(traj, cache)
    spans = [(a, min(a + chunk, count)) for a in range(0, count, chunk)] + [(0, count)]
    return {f"precise BN, batches {start + a}-{start + b - 1}": {n: (m[a:b].mean(0), v[a:b].mean(0))
                                                              for n, (m, v) in traj.items()} for a, b in spans}


def local_error(run: tuple, ref: tuple, eps: float) -> float:
    """RMS error of one BN's eval output for inputs distributed as ``ref``, in units of its std:
    sqrt(mean_c[(s-1)^2 + d^2]) with s = sqrt((v_ref+eps)/(v_run+eps)), d = (m_ref-m_run)/sqrt(v_run+eps)."""
    (rm, rv), (pm, pv) = run, ref
    scale = np.sqrt((pv + eps) / (rv + eps))
    shift = (pm - rm) / np.sqrt(rv + eps)
    return float(np.sqrt(np.mean((scale - 1) ** 2 + shift**2)))


# --------------------------------------------------------------------------------------------
# where each BN layer sits


def group_of(name: str) -> str:
    if name.startswith("backbone."):
        return "backbone"
    if name.startswith(("pyramid.lateral.", "pyramid.extra.")):
        return "projection"
    if ".top_down." in name:
        return "top-down"
    if ".bottom_up." in name:
        return "bottom-up"
    if name.startswith("head."):
        return "head"
    raise ValueError(f"BN layer '{name}' is in no known group; update group_of for the new layout")


def topology(model: nn.Module, size: int) -> dict[str, dict]:
    """Per BN layer: pyramid level (log2 of its stride) and BN depth, the most BN layers in series on
    any path from the input to it (incl. itself), read off the autograd graph of one eval forward.
    ``<logits>``: the longest path to the output, counting all BN layers and those after the backbone."""
    model = copy.deepcopy(model).eval()
    widths, by_param = {}, {}
    for name, module in batchnorm_layers(model):
        by_param[id(module.weight)] = name
        module.register_forward_hook(lambda m, a, out, name=name: widths.__setitem__(name, out.shape[-1]))
    logits = model(torch.zeros(1, 3, size, size))
    depth = bn_depths(logits.grad_fn, by_param)
    after = {k: v for k, v in by_param.items() if group_of(v) != "backbone"}
    info = {name: {"level": int(round(math.log2(size / width))), "depth": depth.get(name, 0),
                   "group": group_of(name)} for name, width in widths.items()}
    info["<logits>"] = {"depth": depth["<logits>"],
                        "depth_after_backbone": bn_depths(logits.grad_fn, after)["<logits>"]}
    return info


def bn_depths(root, by_param: dict[int, str]) -> dict[str, int]:
    """Longest path from the graph's leaves to each BN node and to ``root``, counted in the BN nodes
    whose weight is in ``by_param`` (others count 0)."""
    def bn_name(node):
        if "BatchNorm" not in type(node).__name__:
            return None
        for child, _ in node.next_functions:
            if child is not None and hasattr(child, "variable") and id(child.variable) in by_param:
                return by_param[id(child.variable)]
        return "?"

    memo: dict = {}
    stack = [(root, False)]
    while stack:  # iterative post-order: the graph is deeper than Python's recursion limit
        node, ready = stack.pop()
        if node in memo:
            continue
        children = [c for c, _ in node.next_functions if c is not None]
        if not ready:
            stack.append((node, True))
            stack.extend((c, False) for c in children if c not in memo)
            continue
        memo[node] = (bn_name(node) not in (None, "?")) + max((memo[c] for c in children), default=0)
    out = {bn_name(node): d for node, d in memo.items() if bn_name(node) not in (None, "?")}
    out["<logits>"] = memo[root]
    return out


# --------------------------------------------------------------------------------------------
# measurements


def run_one(kind: str, debias: bool, args: argparse.Namespace) -> dict:
    """Train (or reload with --reuse) one model; returns it with its recorded batch statistics
    and the precise statistics of its final weights."""
    out = args.out / f"{kind}_{'debias' if debias else 'plain'}"
    cache = out / "bn_root_cause.pt"
    trainer = make_trainer(args.configs / MODELS[kind], out / "run", args.steps)
    model, val_set = trainer.model, trainer.val_set
    if args.reuse and cache.is_file():
        saved = torch.load(cache, weights_only=False)
        model.load_state_dict(saved.pop("state"))
    else:
        if debias:
            debias_batchnorm(model)
        else:  # the models may debias their own BN layers: the baseline is PyTorch's plain EMA
            remove_debias(model)
        recorder = BatchStatRecorder(model)
        trainer_miou = fit(trainer)
        recorder.remove()
        saved = {"trajectory": recorder.trajectory(), "trainer_mIoU": trainer_miou}
        saved["precise"] = precise_stats(model, training_batches(trainer, args.steps, args.bn_batches))
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"state": model.state_dict(), **saved}, cache)
    momenta = {n: m.momentum for n, m in batchnorm_layers(model)}
    eps = {n: m.eps for n, m in batchnorm_layers(model)}
    return {"model": model.eval(), "val_set": val_set, "momenta": momenta, "eps": eps, "out": out,
            "batches": lambda start, count: training_batches(trainer, start, count), **saved}


def schedules(run: dict, steps: int) -> dict[str, dict]:
    """Running statistics of the same weights under each schedule (name -> layer -> (mean, var))."""
    traj, momenta = run["trajectory"], run["momenta"]
    plain = {n: simulate(*traj[n], momenta[n], debias=False) for n in traj}
    init_free = {}
    for n, (mean, var) in plain.items():  # Adam's correction: the initial 0 / 1 removed, same EMA weights
        w0 = (1 - momenta[n]) ** steps
        init_free[n] = (mean / (1 - w0), (var - w0) / (1 - w0))
    return {
        "running (trained buffers)": bn_stats(run["model"]),
        "EMA, simulated": plain,
        "EMA without the initial 0/1": init_free,
        "bias-corrected max(m, 1/t), simulated": {n: simulate(*traj[n], momenta[n], debias=True) for n in traj},
        "polynomial max(m, min(1, 5/t)), simulated": {n: simulate(*traj[n], momenta[n], True, 5.0) for n in traj},
        "EMA momentum 0.1, simulated": {n: simulate(*traj[n], 0.1, debias=False) for n in traj},
        "precise BN": run["precise"],
    }


def layer_table(run: dict, stats: dict, topo: dict, steps: int) -> list[dict]:
    """One row per BN layer: where it is, its pre-BN scale and the local error of each schedule."""
    precise = run["precise"]
    rows = []
    for name, ref in precise.items():
        row = {"layer": name, **topo[name], "momentum": run["momenta"][name],
               "init_weight": (1 - run["momenta"][name]) ** steps,
               "precise_var": float(np.median(ref[1])),
               "precise_absmean_over_std": float(np.median(np.abs(ref[0]) / np.sqrt(ref[1]))),
               "var_ratio": float(np.median(stats["running (trained buffers)"][name][1] / ref[1]))}
        for label, values in stats.items():
            if label != "precise BN":
                row[label] = local_error(values[name], ref, run["eps"][name])
        rows.append(row)
    return rows


def bn_outputs(model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every BN layer's eval-mode output for one image, and the logits."""
    outputs = {}
    handles = [m.register_forward_hook(lambda m, a, out, n=n: outputs.__setitem__(n, out.detach().clone()))
               for n, m in batchnorm_layers(model)]
    try:
        with torch.no_grad():
            outputs["<logits>"] = model.eval()(image[None])
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def activation_drift(model: nn.Module, stats: dict, ref_stats: dict, images: list[torch.Tensor]) -> dict[str, float]:
    """Relative RMS difference of every BN layer's eval-mode output between ``stats`` and
    ``ref_stats`` (the error each layer receives from upstream plus its own)."""
    test, ref = load_bn_stats(model, stats), load_bn_stats(model, ref_stats)
    totals: dict[str, list[float]] = {}
    for image in images:
        expected, got = bn_outputs(ref, image), bn_outputs(test, image)
        for name, value in expected.items():
            totals.setdefault(name, []).append(float((got[name] - value).norm() / value.norm().clamp_min(1e-12)))
    return {n: statistics.fmean(v) for n, v in totals.items()}


def swap_experiments(run: dict, running: dict, topo: dict, count: int) -> list[tuple[str, float]]:
    """mIoU when one part of the network keeps its running statistics and the rest is precise,
    and the converse."""
    precise, model, val_set = run["precise"], run["model"], run["val_set"]
    parts = {g: [n for n in precise if topo[n]["group"] == g] for g in GROUPS}
    parts["BiFPN/FPN nodes (top-down + bottom-up)"] = parts["top-down"] + parts["bottom-up"]
    parts["pyramid levels P6-P9 (projection + nodes)"] = [
        n for n in precise if topo[n]["group"] not in ("backbone", "head") and topo[n]["level"] >= 6]
    parts["pyramid levels P2-P5 (projection + nodes)"] = [
        n for n in precise if topo[n]["group"] not in ("backbone", "head") and topo[n]["level"] <= 5]
    rows = []
    for label, names in parts.items():
        if not names:
            continue
        only_running = {**precise, **{n: running[n] for n in names}}
        only_precise = {**running, **{n: precise[n] for n in names}}
        rows.append((f"{label} ({len(names)} BN)", miou(load_bn_stats(model, only_running), val_set, count),
                     miou(load_bn_stats(model, only_precise), val_set, count)))
    return rows


def trajectory_features(run: dict, steps: int) -> dict[str, dict]:
    """Per layer: how far the pre-BN variance moved during training (final precise variance over the
    mean batch variance of the first third) and the step-to-step noise of the batch variance (last 25)."""
    out = {}
    for name, (_, var_t) in run["trajectory"].items():
        early = var_t[: max(1, steps // 3)].mean(axis=0)
        last = var_t[-25:]
        out[name] = {"var_growth": float(np.median(run["precise"][name][1] / early)),
                     "batch_var_noise": float(np.median(last.std(axis=0) / last.mean(axis=0)))}
    return out


def fusion_input_variance(run: dict, start: int, count: int) -> dict[str, float]:
    """Variance of each fusion's output (a node's input before activation and separable conv),
    train mode, averaged over channels and ``count`` training batches: averaging (BiFPN's
    normalized weights, ~1/k each) vs summing (plain FPN) sets the scale every node BN sees."""
    model = copy.deepcopy(run["model"]).train()
    sums: dict[str, list[float]] = {}
    for name, module in model.named_modules():
        if type(module).__name__ == "WeightedFusion":
            module.register_forward_hook(lambda m, a, out, name=name: sums.setdefault(name, []).append(
                float(out.detach().float().var(dim=(0, 2, 3)).mean())))
    with torch.no_grad():
        for batch in run["batches"](start, count):
            model(batch)
    return {name: statistics.fmean(v) for name, v in sums.items()}


def fusion_weights(model: nn.Module) -> dict[str, list[float]]:
    """Fast-normalized fusion weights relu(w)/(sum+eps) of every fusion (all 1/k at init)."""
    out = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if type(module).__name__ == "WeightedFusion" and weight is not None:
            w = torch.relu(weight.detach())
            out[name] = (w / (w.sum() + 1e-4)).tolist()
    return out


def analyse(plain: dict, debiased: dict | None, args: argparse.Namespace) -> dict:
    model, val_set, count = plain["model"], plain["val_set"], args.val_images
    topo = topology(model, args.topology_size)
    stats = schedules(plain, args.steps)
    running, precise = stats["running (trained buffers)"], plain["precise"]
    corrected = stats["bias-corrected max(m, 1/t), simulated"]
    result = {
        "trainer_mIoU_8_images": plain["trainer_mIoU"],
        "mIoU": {label: miou(load_bn_stats(model, st), val_set, count) for label, st in stats.items()},
        "simulation_check": max(local_error(running[n], stats["EMA, simulated"][n], 0.0) for n in precise),
        "logits_depth": topo["<logits>"],
        "swaps": swap_experiments(plain, running, topo, count),
        "precise_sets": {label: miou(load_bn_stats(model, st), val_set, count)
                         for label, st in precise_sets(plain, args.steps, args.precise_sets, args.bn_batches).items()},
        "fusion_weights": fusion_weights(model),
        "fusion_input_var": fusion_input_variance(plain, args.steps, 5),
    }
    features = trajectory_features(plain, args.steps)
    result["layers"] = [{**row, **features[row["layer"]]} for row in layer_table(plain, stats, topo, args.steps)]
    images = [val_set[i]["image"] for i in range(args.drift_images)]
    result["drift"] = {"running": activation_drift(model, running, precise, images),
                       "bias-corrected": activation_drift(model, corrected, precise, images)}
    if debiased is not None:
        result["debiased_run"] = debiased_run_summary(plain, debiased, corrected, count)
    return result


def debiased_run_summary(plain: dict, debiased: dict, simulated: dict, count: int) -> dict:
    """The run trained with debias_batchnorm: eval vs precise mIoU of its own weights, and checks
    that its weights equal the plain run's (running statistics never feed back into training)."""
    model = debiased["model"]
    plain_state = plain["model"].state_dict()
    weight_diff = max(float((v - plain_state[k]).abs().max()) for k, v in model.state_dict().items()
                      if v.is_floating_point() and "running_" not in k)
    running = bn_stats(model)
    return {
        "mIoU_running": miou(model, debiased["val_set"], count),
        "mIoU_precise": miou(load_bn_stats(model, debiased["precise"]), debiased["val_set"], count),
        "trainer_mIoU_8_images": debiased["trainer_mIoU"],
        "max_weight_diff_vs_plain_run": weight_diff,
        "max_local_error_vs_simulation": max(local_error(running[n], simulated[n], 0.0) for n in running),
        "local_error_median": float(np.median([local_error(running[n], debiased["precise"][n], 1e-3)
                                               for n in running if group_of(n) != "backbone"])),
    }


# --------------------------------------------------------------------------------------------
# report


def md_table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 0.01 or abs(v) >= 1000 else f"{v:.3f}".rstrip("0").rstrip(".")
        return str(v)
    return markdown_table(headers, [[cell(v) for v in row] for row in rows])


def miou_table(results: dict) -> str:
    kinds = list(results)
    labels = list(next(iter(results.values()))["mIoU"])
    rows = [[label] + [results[k]["mIoU"][label] for k in kinds] for label in labels]
    if all("debiased_run" in results[k] for k in kinds):
        for key, label in (("mIoU_running", "trained with debias_batchnorm: running stats"),
                           ("mIoU_precise", "trained with debias_batchnorm: precise BN")):
            rows.append([label] + [results[k]["debiased_run"][key] for k in kinds])
    for label in next(iter(results.values()))["precise_sets"]:
        rows.append([label] + [results[k]["precise_sets"][label] for k in kinds])
    rows.append(["trainer's own check (8 images, running stats)"]
                + [results[k]["trainer_mIoU_8_images"] for k in kinds])
    return md_table(["BN statistics (same weights)"] + [f"{k} mIoU %" for k in kinds], rows)


def median_of(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows])) if rows else float("nan")


SCHEDULE_COLUMNS = {"running (trained buffers)": "err running",
                    "EMA without the initial 0/1": "err EMA w/o init",
                    "bias-corrected max(m, 1/t), simulated": "err bias-corrected",
                    "EMA momentum 0.1, simulated": "err EMA 0.1"}


def group_table(layers: list[dict], key: str, values) -> str:
    headers = [key, "#BN", "max depth", "pre-BN var", "running/precise var", "|mean|/std", "(1-m)^T",
               *SCHEDULE_COLUMNS.values(),
               "var growth", "batch-var noise"]
    rows = []
    for value in values:
        sel = [r for r in layers if r[key] == value]
        if sel:
            rows.append([value, len(sel), max(r["depth"] for r in sel), median_of(sel, "precise_var"),
                         median_of(sel, "var_ratio"), median_of(sel, "precise_absmean_over_std"),
                         median_of(sel, "init_weight"),
                         *(median_of(sel, c) for c in SCHEDULE_COLUMNS), median_of(sel, "var_growth"),
                         median_of(sel, "batch_var_noise")])
    return md_table(headers, rows)


def drift_table(result: dict, width: int = 5) -> str:
    layers = {r["layer"]: r for r in result["layers"]}
    drift = result["drift"]
    top = max(r["depth"] for r in layers.values())
    rows = []
    for lo in range(1, top + 1, width):
        names = [n for n, r in layers.items() if lo <= r["depth"] < lo + width]
        groups = sorted({layers[n]["group"] for n in names}, key=GROUPS.index)
        rows.append([f"{lo}-{lo + width - 1}", len(names), ", ".join(groups),
                     *(float(np.median([drift[k][n] for n in names])) for k in ("running", "bias-corrected"))])
    rows.append(["logits", "", "", drift["running"]["<logits>"], drift["bias-corrected"]["<logits>"]])
    return md_table(["BN depth", "#BN", "groups", "drift, running stats", "drift, bias-corrected"], rows)


def fusion_table(results: dict) -> str:
    rows = []
    for kind, result in results.items():
        for part in ("top_down", "bottom_up", "head"):
            def pick(d):
                return [v for n, v in d.items() if f"{part}." in n or n.startswith(part)]
            ws, variances = pick(result["fusion_weights"]), pick(result["fusion_input_var"])
            ratios = [wi * len(w) for w in ws for wi in w]  # 1.0 = unchanged from init (1/k)
            if variances:
                low, high = (min(ratios), max(ratios)) if ratios else ("sum", "sum")
                rows.append([kind, part, len(variances), low, high, float(np.median(variances))])
    return md_table(["model", "fusions", "#", "min w*k", "max w*k", "fused-input var (median)"], rows)


def report(results: dict, args: argparse.Namespace) -> str:
    parts = [f"## Running vs precise BN after {args.steps} steps (mIoU on {args.val_images} val images)",
             miou_table(results)]
    for kind, result in results.items():
        depth = result["logits_depth"]
        parts += [f"## {kind}: per-layer error by group (medians over layers; err = RMS eval-output error "
                  f"of the layer in units of its std, for inputs distributed as the precise statistics)",
                  group_table(result["layers"], "group", GROUPS),
                  f"### {kind}: pyramid BN layers (projection + nodes) by level",
                  group_table([r for r in result["layers"] if r["group"] in ("projection", "top-down", "bottom-up")],
                              "level", range(1, 12)),
                  f"### {kind}: mIoU with one part on running stats (rest precise) / one part precise (rest running)",
                  md_table(["part", "only this part running", "only this part precise"], result["swaps"]),
                  f"### {kind}: eval-mode activation drift vs precise stats, by BN depth (longest BN path "
                  f"input->logits: {depth['depth']} BN, {depth['depth_after_backbone']} after the backbone)",
                  drift_table(result)]
        if "debiased_run" in result:
            parts += [f"### {kind}: trained with debias_batchnorm",
                      "```\n" + json.dumps(result["debiased_run"], indent=1) + "\n```"]
        parts.append(f"simulation check ({kind}): max local error between trained buffers and simulated EMA = "
                     f"{result['simulation_check']:.2e}")
    parts += ["## Fusion weights at the end (fast-normalized: w*k = 1 as initialized; FPN nodes sum) and the "
              "variance of the fused inputs (train mode)", fusion_table(results)]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["bifpn", "fpn"])
    parser.add_argument("--val-images", type=int, default=24)
    parser.add_argument("--bn-batches", type=int, default=25, help="training batches for precise BN")
    parser.add_argument("--drift-images", type=int, default=4)
    parser.add_argument("--precise-sets", type=int, default=100,
                        help="training batches for the precise-BN variability check (chunks of --bn-batches)")
    parser.add_argument("--topology-size", type=int, default=512, help="input side for the BN-depth forward")
    parser.add_argument("--no-debias-run", action="store_true", help="skip training with debias_batchnorm")
    parser.add_argument("--configs", type=Path, default=ROOT / "configs" / "claims",
                        help="folder holding eseg_p9.yaml and fpn_p9.yaml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bn_root_cause"))
    parser.add_argument("--reuse", action="store_true", help="reuse trained runs cached in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for kind in args.models:
        plain = run_one(kind, False, args)
        debiased = None if args.no_debias_run else run_one(kind, True, args)
        results[kind] = analyse(plain, debiased, args)
    text = report(results, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(text)
    print(f"\nwritten: {args.out / 'report.md'}, {args.out / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
