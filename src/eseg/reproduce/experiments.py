"""The claims manifest (``configs/claims/experiments.yaml``), the budget it resolves to, and the
training jobs: one per (experiment, seed), each a checked :class:`~eseg.config.ExperimentConfig`.

The manifest is the only table of experiments and presets; it is loaded into two
:class:`~eseg.registry.Registry` tables (experiments in table order, presets by name). Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import schema
from ..config import ExperimentConfig, load_config, parse_override
from ..errors import ConfigError
from ..fileio import read_yaml_mapping
from ..registry import Registry
from ..schema import option
from .verdicts import ROLES, SINGLE_ROLES

MANIFEST_FILE = "experiments.yaml"
MANIFEST_KEYS = ("experiments", "presets", "bn_tolerance_points")
PRESETS = ("full", "quick")  # `eseg reproduce` and `eseg reproduce --quick`


@dataclass
class ExperimentSpec:
    label: str = option(help="the name on the page")
    roles: list[str] = option([], help=f"what it stands for in the claims: {', '.join(ROLES)}")
    config: str | None = option(None, help="config file relative to the manifest; null: NAME.yaml")


@dataclass
class Preset:
    seeds: list[int] = option(min=0, help="one training run per seed and experiment")
    latency_runs: int = option(min=1, help="interleaved timing rounds")
    steps: int | None = option(None, min=1, help="training steps; null: train.steps")
    val_images: int | None = option(None, min=1, help="validation images; null: eval.max_images")
    bn_batches: int | None = option(None, min=0, help="precise-BN batches; null: train.precise_bn_batches")


@dataclass
class Manifest:
    path: Path
    experiments: Registry  # name -> ExperimentSpec, registered in table order
    presets: Registry  # name -> Preset
    bn_tolerance_points: float

    def names(self) -> list[str]:
        """Experiment names in table order."""
        return self.experiments.find(lambda name, meta: True)

    def config_path(self, name: str) -> Path:
        spec: ExperimentSpec = self.experiments.get(name)
        return self.path.parent / (spec.config or f"{name}.yaml")


def load_manifest(config_dir: str | Path) -> Manifest:
    """``config_dir/experiments.yaml``, checked: known keys and roles, one experiment per
    single role, both presets, and an existing config file per experiment."""
    path = Path(config_dir) / MANIFEST_FILE
    data = read_yaml_mapping(path, "claims manifest", "; run from the repository root or pass --config-dir")
    where = f"claims manifest '{path}'"
    for key in MANIFEST_KEYS + tuple(data):
        if key not in MANIFEST_KEYS:
            raise schema.unknown_key_error(str(key), list(MANIFEST_KEYS), where)
        if key not in data:
            raise ConfigError(f"{where}: '{key}' is missing; the manifest needs {', '.join(MANIFEST_KEYS)}")
    experiments: Registry = Registry("claims experiment")
    for name, values in _mapping(data, "experiments", where).items():
        experiments.register(str(name), schema.from_mapping(ExperimentSpec, values or {}, f"{where}: experiments.{name}"))
    presets: Registry = Registry("claims preset")
    for name, values in _mapping(data, "presets", where).items():
        presets.register(str(name), schema.from_mapping(Preset, values or {}, f"{where}: presets.{name}"))
    tolerance = schema.coerce(data["bn_tolerance_points"], float, f"{where}: bn_tolerance_points")
    manifest = Manifest(path, experiments, presets, tolerance)
    _check_manifest(manifest, where)
    return manifest


def _mapping(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: '{key}' must be a non-empty mapping of name -> settings, got {value!r}")
    return value


def _check_manifest(manifest: Manifest, where: str) -> None:
    holders: dict[str, list[str]] = {role: [] for role in ROLES}
    for name in manifest.names():
        for role in manifest.experiments.get(name).roles:
            if role not in ROLES:
                raise ConfigError(f"{where}: experiments.{name}.roles: unknown role '{role}'; valid: {', '.join(ROLES)}")
            holders[role].append(name)
        if not manifest.config_path(name).is_file():
            raise ConfigError(f"{where}: experiment '{name}' has no config file '{manifest.config_path(name)}'")
    for role in SINGLE_ROLES:
        if len(holders[role]) > 1:
            raise ConfigError(f"{where}: role '{role}' names one experiment, but {holders[role]} all claim it")
    for preset in PRESETS:
        if preset not in manifest.presets:
            raise ConfigError(f"{where}: presets.{preset} is missing; `eseg reproduce` needs {' and '.join(PRESETS)}")
        if not manifest.presets.get(preset).seeds:
            raise ConfigError(f"{where}: presets.{preset}.seeds must list at least one seed")


# -- the budget ------------------------------------------------------------------------------------


@dataclass
class ClaimsOptions:
    """What ``eseg reproduce`` was asked: a preset and any values that override it."""

    config_dir: Path = Path("configs/claims")
    preset: str = "full"
    experiments: list[str] | None = None  # None: every experiment of the manifest
    seeds: list[int] | None = None
    steps: int | None = None
    val_images: int | None = None
    bn_batches: int | None = None
    latency_runs: int | None = None
    overrides: list[str] = field(default_factory=list)  # --set section.key=value, for every run
    threads: int = 2
    jobs: int = 1
    reuse: bool = False
    work_dir: Path = Path("runs/claims")
    out: Path = Path("docs")  # where the page goes (recorded for its re-render command)
    command: str = "eseg reproduce"


@dataclass
class Budget:
    """The resolved shared budget: identical for every experiment; only the seed varies."""

    seeds: list[int]
    latency_runs: int
    overrides: list[str]  # applied to every experiment config, before train.seed


def resolve_budget(options: ClaimsOptions, manifest: Manifest) -> Budget:
    preset: Preset = manifest.presets.get(options.preset)
    pick = lambda given, preset_value: preset_value if given is None else given  # noqa: E731
    values = {"train.steps": pick(options.steps, preset.steps),
              "eval.max_images": pick(options.val_images, preset.val_images),
              "train.precise_bn_batches": pick(options.bn_batches, preset.bn_batches)}
    overrides = [f"{key}={value}" for key, value in values.items() if value is not None]
    seeds = list(pick(options.seeds, preset.seeds))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list distinct seeds, got {seeds}")
    return Budget(seeds, pick(options.latency_runs, preset.latency_runs), overrides + list(options.overrides))


def experiment_config(path: Path, overrides: list[str], seed: int) -> ExperimentConfig:
    """The experiment's config under the budget, for one seed. A budget shorter than the
    config's warmup (a smoke run) gets a warmup of a fifth of its steps, unless one is set."""
    given = {".".join(parse_override(o)[0]): parse_override(o)[1] for o in overrides}
    extra = []
    if "train.warmup_steps" not in given and "train.steps" in given:
        others = [o for o in overrides if parse_override(o)[0] != ["train", "steps"]]
        steps = given["train.steps"]
        if isinstance(steps, int) and steps > 0 and load_config(path, others).train.warmup_steps >= steps:
            extra = [f"train.warmup_steps={steps // 5}"]
    return load_config(path, [*overrides, *extra, f"train.seed={seed}"])


# -- the jobs --------------------------------------------------------------------------------------


@dataclass
class Job:
    """One training run: an experiment at one seed, in its own folder."""

    name: str
    seed: int
    cfg: ExperimentConfig
    run_dir: Path


@dataclass
class Plan:
    manifest: Manifest
    budget: Budget
    names: list[str]  # the experiments to run, in table order
    jobs: list[Job]  # seed-major: an interrupted run has every experiment at its first seeds

    def config(self, name: str) -> ExperimentConfig:
        """The experiment's config at the first seed (what the costs and the page describe)."""
        return next(job.cfg for job in self.jobs if job.name == name)


def plan_claims(options: ClaimsOptions) -> Plan:
    """Every job of the run, each config loaded and checked before anything trains."""
    manifest = load_manifest(options.config_dir)
    for name in options.experiments or []:
        try:
            manifest.experiments.check(name)
        except ConfigError as exc:
            raise ConfigError(f"--experiments: {exc} (the experiments of {manifest.path})") from exc
    chosen = set(options.experiments or manifest.names())
    names = [name for name in manifest.names() if name in chosen]
    budget = resolve_budget(options, manifest)
    jobs = []
    for seed in budget.seeds:
        for name in names:
            cfg = experiment_config(manifest.config_path(name), budget.overrides, seed)
            run_dir = Path(options.work_dir) / name / f"seed{seed}"
            cfg.run.out = str(run_dir)
            jobs.append(Job(name, seed, cfg, run_dir))
    return Plan(manifest, budget, names, jobs)
