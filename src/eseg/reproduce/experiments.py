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
OPTIONAL_KEYS = ("families", "parts")
PRESETS = ("full", "quick")  # `eseg reproduce` and `eseg reproduce --quick`


@dataclass
class ExperimentSpec:
    label: str = option(help="the name on the page")
    roles: list[str] = option([], help=f"what it stands for in the claims: {', '.join(ROLES)}")
    config: str | None = option(None, help="config file relative to the manifest; null: NAME.yaml")
    family: str | None = option(None, help="the decoder family whose front (mIoU against latency) it is a point of")
    set: list[str] = option([], help="section.key=value overrides of its config (a family's width, say)")
    hypothesis: str | None = option(None, help="the cause of ESeg's gap to DeepLabV3+ it tests; such an experiment "
                                               "trains only in the presets that list it")


@dataclass
class Preset:
    seeds: list[int] = option(min=0, help="one training run per seed and experiment")
    latency_runs: int = option(min=1, help="interleaved timing rounds")
    steps: int | None = option(None, min=1, help="training steps; null: train.steps")
    val_images: int | None = option(None, min=1, help="validation images; null: eval.max_images")
    bn_batches: int | None = option(None, min=0, help="precise-BN batches; null: train.precise_bn_batches")
    experiments: list[str] | None = option(None, help="the experiments it trains; null: all")
    lrs: list[float] | None = option(None, above=0, help="learning rates to sweep (train.lr); null: the configs' own")
    about: str | None = option(None, help="what the preset asks, for the page")


@dataclass
class Part:
    """A named slice of the full preset, short enough for one sitting (under 90 minutes on 2 CPU
    cores); `eseg reproduce --part NAME` trains it, and the page shows whatever parts are done."""

    seeds: list[int] = option(min=0, help="the seeds it trains")
    experiments: list[str] | None = option(None, help="the experiments it trains; null: all")


@dataclass
class Manifest:
    path: Path
    experiments: Registry  # name -> ExperimentSpec, registered in table order
    presets: Registry  # name -> Preset
    bn_tolerance_points: float
    families: dict[str, str] = field(default_factory=dict)  # family -> its label on the fronts
    parts: Registry = field(default_factory=lambda: Registry("claims part"))  # name -> Part

    def names(self) -> list[str]:
        """Experiment names in table order."""
        return self.experiments.find(lambda name, meta: True)

    def claims_names(self) -> list[str]:
        """The experiments a preset trains when it lists none: all but the hypotheses' own."""
        return [name for name in self.names() if self.experiments.get(name).hypothesis is None]

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
        if key not in MANIFEST_KEYS + OPTIONAL_KEYS:
            raise schema.unknown_key_error(str(key), list(MANIFEST_KEYS + OPTIONAL_KEYS), where)
        if key not in data and key in MANIFEST_KEYS:
            raise ConfigError(f"{where}: '{key}' is missing; the manifest needs {', '.join(MANIFEST_KEYS)}")
    experiments: Registry = Registry("claims experiment")
    for name, values in _mapping(data, "experiments", where).items():
        experiments.register(str(name), schema.from_mapping(ExperimentSpec, values or {}, f"{where}: experiments.{name}"))
    presets: Registry = Registry("claims preset")
    for name, values in _mapping(data, "presets", where).items():
        presets.register(str(name), schema.from_mapping(Preset, values or {}, f"{where}: presets.{name}"))
    tolerance = schema.coerce(data["bn_tolerance_points"], float, f"{where}: bn_tolerance_points")
    parts: Registry = Registry("claims part")
    for name, values in (data.get("parts") or {}).items():
        parts.register(str(name), schema.from_mapping(Part, values or {}, f"{where}: parts.{name}"))
    families = {str(k): str(v) for k, v in (data.get("families") or {}).items()}
    manifest = Manifest(path, experiments, presets, tolerance, families, parts)
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
        family = manifest.experiments.get(name).family
        if family is not None and family not in manifest.families:
            raise ConfigError(f"{where}: experiments.{name}.family '{family}' is not listed under 'families' "
                              f"({', '.join(manifest.families) or 'none'}); add it with its label")
    for kind, table in (("parts", manifest.parts), ("presets", manifest.presets)):
        for entry in table.names():
            for name in table.get(entry).experiments or []:
                if name not in manifest.experiments:
                    raise ConfigError(f"{where}: {kind}.{entry} names experiment '{name}', which is not in 'experiments'")
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
    part: str | None = None  # train only this part of the manifest (implies reuse); show every finished run
    work_dir: Path = Path("runs/claims")
    out: Path = Path("docs")  # where the page goes (recorded for its re-render command)
    command: str = "eseg reproduce"


@dataclass
class Budget:
    """The resolved shared budget: identical for every experiment; only the seed varies."""

    seeds: list[int]
    latency_runs: int
    overrides: list[str]  # applied to every experiment config, before train.seed
    lrs: list[float] | None = None  # a learning-rate sweep: one job per rate (None: the configs' rate)
    experiments: list[str] | None = None  # the preset's experiments (None: all)
    about: str | None = None


def resolve_budget(options: ClaimsOptions, manifest: Manifest) -> Budget:
    try:
        preset: Preset = manifest.presets.get(options.preset)
    except ConfigError as exc:
        raise ConfigError(f"--preset: {exc} (the presets of {manifest.path})") from exc
    pick = lambda given, preset_value: preset_value if given is None else given  # noqa: E731
    values = {"train.steps": pick(options.steps, preset.steps),
              "eval.max_images": pick(options.val_images, preset.val_images),
              "train.precise_bn_batches": pick(options.bn_batches, preset.bn_batches)}
    overrides = [f"{key}={value}" for key, value in values.items() if value is not None]
    seeds = list(pick(options.seeds, preset.seeds))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list distinct seeds, got {seeds}")
    return Budget(seeds, pick(options.latency_runs, preset.latency_runs), overrides + list(options.overrides),
                  preset.lrs, preset.experiments, preset.about)


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
    """One training run: an experiment (at one learning rate of a sweep) at one seed, in its own folder."""

    name: str  # the key of its results: the experiment's name, with "@lr<rate>" in a sweep
    seed: int
    cfg: ExperimentConfig
    run_dir: Path
    experiment: str = ""  # the manifest's name (the same as ``name`` outside a sweep)


@dataclass
class Plan:
    manifest: Manifest
    budget: Budget
    names: list[str]  # the keys of the results (experiments, at each rate of a sweep), in table order
    jobs: list[Job]  # seed-major: an interrupted run has every experiment at its first seeds

    def config(self, name: str) -> ExperimentConfig:
        """The experiment's config at the first seed (what the costs and the page describe)."""
        return next(job.cfg for job in self.jobs if job.name == name)


def plan_claims(options: ClaimsOptions) -> Plan:
    """Every job of the run, each config loaded and checked before anything trains."""
    manifest = load_manifest(options.config_dir)
    budget = resolve_budget(options, manifest)
    for name in options.experiments or []:
        try:
            manifest.experiments.check(name)
        except ConfigError as exc:
            raise ConfigError(f"--experiments: {exc} (the experiments of {manifest.path})") from exc
    chosen = set(options.experiments or budget.experiments or manifest.claims_names())
    names = [name for name in manifest.names() if name in chosen]
    rates = budget.lrs or [None]
    jobs = [experiment_job(manifest, budget, name, lr, seed, Path(options.work_dir))
            for seed in budget.seeds for name in names for lr in rates]
    return Plan(manifest, budget, list(dict.fromkeys(job.name for job in jobs)), jobs)


def experiment_job(manifest: Manifest, budget: Budget, name: str, lr: float | None, seed: int, work_dir: Path) -> Job:
    """One job; a rate of a sweep gets its own key and folder (``NAME@lr0.003``, ``NAME/lr0.003/``)."""
    spec: ExperimentSpec = manifest.experiments.get(name)
    rate = [] if lr is None else [f"train.lr={lr}"]
    cfg = experiment_config(manifest.config_path(name), [*spec.set, *budget.overrides, *rate], seed)
    key, folder = (name, work_dir / name) if lr is None else (f"{name}@lr{lr:g}", work_dir / name / f"lr{lr:g}")
    cfg.run.out = str(folder / f"seed{seed}")
    return Job(key, seed, cfg, folder / f"seed{seed}", experiment=name)


def part_jobs(plan: Plan, part: str) -> list[Job]:
    """The jobs of the manifest's part ``part`` (a ConfigError naming the parts if unknown)."""
    try:
        spec: Part = plan.manifest.parts.get(part)
    except ConfigError as exc:
        raise ConfigError(f"--part: {exc} (the parts of {plan.manifest.path})") from exc
    planned = {job.experiment for job in plan.jobs}
    names = set(spec.experiments or planned)
    outside = sorted(names - planned)
    if outside:
        raise ConfigError(f"--part {part}: it names {', '.join(outside)}, which this preset (and --experiments) does "
                          f"not train; run the part with the preset it slices (the full one, by default)")
    return [job for job in plan.jobs if job.experiment in names and job.seed in spec.seeds]
