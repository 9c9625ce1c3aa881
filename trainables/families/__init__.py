"""The family registry: a family is a task with its data, architectures, loss, metrics and presets.

``sweeper/`` knows families only through :func:`get_family`. A family registers itself on import
with ``register_family(Family(...))``: the built-in ones are the modules of this package, users'
own come from their packages (trainables/plugins.py). Either way a family is its module, its
models (``register_model``) and its search space and promotion YAML files.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch

from search_spaces import InlineSpace, SearchSpace, family_search_space_path, load_search_space, parse_search_space
from search_spaces.policy import Promotion, family_promotion_path, load_promotion
from trainables.data import DataSplits
from trainables.data.tables import Arrays, Schema
from trainables.errors import UserError
from trainables.models import architectures, model_hyperparameters
from trainables.plugins import FAMILIES, import_plugins, load_entry_points
from trainables.registry import Registry

# Hyperparameters the generic trainable consumes itself; every other one goes to the model.
TRAINING_HYPERPARAMETERS = ("learning_rate", "weight_decay", "batch_size")
# Optional training settings (a baseline may leave them out): the learning-rate schedule,
# ``plateau`` (the default) or ``cosine`` with a linear warm-up (see train_loop.learning_rate_schedule).
SCHEDULE_SETTINGS = ("schedule", "warmup_fraction")

# a split's arrays -> outputs in the family's model format, one array per name in ``Family.outputs``
Predictor = Callable[[Arrays], list[np.ndarray]]


class UnknownFamilyError(UserError):
    pass


@dataclass(frozen=True)
class Preset:
    """A sweep size: ``smoke`` (seconds, for tests), ``quick`` (minutes on a laptop), ``default``."""

    trials: int
    epochs: int
    data: Mapping[str, Any]  # family-specific data settings, e.g. simulator sizes


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    metric: str  # main metric; the trainable reports it as val_<metric>, promotion as test_<metric>
    mode: Literal["min", "max"]
    schema: Schema
    inputs: tuple[str, ...]  # schema columns passed to the model, in call order
    targets: tuple[str, ...]  # schema columns the loss and metrics read
    outputs: tuple[str, ...]  # names of the model's outputs, in return order
    metrics: tuple[str, ...]  # names evaluate() returns; ``metric`` is one of them
    presets: Mapping[str, Preset]
    # (data settings, user Parquet file or None, seed) -> splits
    load_data: Callable[[Mapping[str, Any], Path | None, int], DataSplits]
    # training split -> what models must know about the data (sizes, normalisation)
    model_context: Callable[[Arrays], dict[str, Any]]
    # (model outputs, batch of tensors) -> scalar loss
    loss: Callable[[Sequence[torch.Tensor], Mapping[str, torch.Tensor]], torch.Tensor]
    # (model outputs over a split, that split's arrays) -> metrics without prefix; default: the
    # mean of ``row_scores`` over the rows
    evaluate: Callable[[Sequence[np.ndarray], Arrays], dict[str, float]] | None = None
    # optional, for metrics that are means over rows: (outputs, arrays) -> metric -> per-row values.
    # The promotion bootstrap then averages resampled rows instead of evaluating again and again.
    row_scores: Callable[[Sequence[np.ndarray], Arrays], dict[str, np.ndarray]] | None = None
    # the non-learned reference the networks must beat: (splits) -> a predictor fitted on the
    # training split (its settings chosen on validation, never on test) that maps a split's arrays
    # to outputs in the model's format, so ``evaluate`` and ``row_scores`` score it like a network
    reference: Callable[[DataSplits], Predictor] | None = None
    # optional training-time augmentations: (train batch, config, generator) -> batch; the config
    # keys they read are listed in ``augmentations`` so search spaces may set them
    augment: Callable[[dict[str, torch.Tensor], Mapping[str, Any], torch.Generator], dict[str, torch.Tensor]] | None = None
    augmentations: tuple[str, ...] = ()
    # optional slices of a split for per-slice errors, e.g. by active receivers:
    # arrays -> slice name -> (N,) bool mask; the promotion reports the main metric on each
    slices: Callable[[Arrays], dict[str, np.ndarray]] | None = None
    # optional check of rows a model cannot take, beyond the schema (e.g. no active receiver):
    # (arrays, source) -> None or a DataError naming the source and the fix; applied to users'
    # files by ``load_data`` and to the inputs of ``sweeper predict``
    check_rows: Callable[[Arrays, str], None] | None = None
    # the column whose values must not be shared between splits (e.g. subjects), if any
    group: str | None = None
    # optional diagnostics for the promotion report: (model -> seeds -> outputs, test targets) -> figures
    plots: Callable[[Mapping[str, Sequence[Sequence[np.ndarray]]], Arrays], dict[str, Any]] | None = None
    # what a trial costs, the second of the default objectives (`launch --objectives default`)
    cost: str = "latency_ms_p95"
    # the family's search space and promotion policy; default: search_spaces/NAME.yaml and
    # search_spaces/NAME.promotion.yaml (a plugin family keeps its own beside its module)
    search_space_file: Path | None = None
    promotion_file: Path | None = None

    def __post_init__(self) -> None:
        if self.evaluate is None:
            if self.row_scores is None:
                raise ValueError(f"family {self.name!r} needs evaluate or row_scores")
            object.__setattr__(self, "evaluate", functools.partial(mean_of_rows, self.row_scores))

    @property
    def validation_metric(self) -> str:
        return f"val_{self.metric}"

    @property
    def objectives(self) -> tuple[str, str]:
        """The default pair a multi-objective sweep trades off: the main metric against the cost."""
        return (self.validation_metric, self.cost)

    @property
    def training_settings(self) -> tuple[str, ...]:
        """Config keys the training loop consumes itself; every other one is a model hyperparameter."""
        return TRAINING_HYPERPARAMETERS + SCHEDULE_SETTINGS + self.augmentations

    def architectures(self) -> tuple[str, ...]:
        return architectures(self.name)

    def search_space(self, given: Path | InlineSpace | None = None) -> SearchSpace:
        """The family's own search space, or a user's (a file, or a sweep file's inline mapping
        with the name of its source) validated against this family."""
        checks = (
            self.name,
            self.architectures(),
            lambda architecture: model_hyperparameters(self.name, architecture),
            self.training_settings,
        )
        if isinstance(given, InlineSpace):
            return parse_search_space(given.document, given.source, *checks)
        return load_search_space(given or self.search_space_file or family_search_space_path(self.name), *checks)

    def context(self, train: Arrays) -> dict[str, Any]:
        """What models must know about the data, plus the input spec an exported model documents."""
        spec = {name: {"dtype": str(train[name].dtype), "shape": ["batch", *train[name].shape[1:]]} for name in self.inputs}
        return {**self.model_context(train), "input_spec": spec}

    def promotion(self) -> Promotion:
        """The family's baselines and promotion policy, validated against its architectures."""
        return load_promotion(
            self.promotion_file or family_promotion_path(self.name),
            self.name,
            self.architectures(),
            lambda architecture: model_hyperparameters(self.name, architecture),
            self.training_settings,
            TRAINING_HYPERPARAMETERS,
            self.metrics,
        )

    def reference_metrics(self, splits: DataSplits, split: str) -> dict[str, float]:
        """The non-learned reference's metrics on ``split`` of ``splits`` ({} if the family has none)."""
        if self.reference is None:
            return {}
        arrays = getattr(splits, split)
        return self.evaluate(self.reference(splits)(arrays), arrays)

    def worst_value(self) -> float:
        return float("inf") if self.mode == "min" else float("-inf")

    def is_better(self, value: float, than: float) -> bool:
        return value < than if self.mode == "min" else value > than


def mean_of_rows(row_scores: Callable[[Sequence[np.ndarray], Arrays], dict[str, np.ndarray]],
                 outputs: Sequence[np.ndarray], arrays: Arrays) -> dict[str, float]:  # fmt: skip
    """Each metric as the mean of its per-row values: a family's evaluate when it gives row_scores."""
    return {name: float(values.mean()) for name, values in row_scores(outputs, arrays).items()}


def select_columns(splits: DataSplits, names: Sequence[str]) -> DataSplits:
    """The splits with only ``names`` (e.g. without bookkeeping columns a generator adds)."""

    def keep(arrays: Arrays | None) -> Arrays | None:
        return None if arrays is None else {name: arrays[name] for name in names}

    return DataSplits(keep(splits.train), keep(splits.validation), keep(splits.test), splits.source)


_registry: Registry[Family] = Registry("family")


def register_family(family: Family) -> Family:
    """Make ``family`` known by its name; a family's module calls it once, on import."""
    return _registry.register(family.name)(family)


def built_in_family_names() -> tuple[str, ...]:
    """The families this package ships (its modules), without plugins."""
    return tuple(module.name for module in pkgutil.iter_modules(__path__))


def family_names() -> tuple[str, ...]:
    """The built-in families, the registered ones and the installed plugins' (not imported yet)."""
    return tuple(sorted({*built_in_family_names(), *_registry, *(entry.name for entry in entry_points(group=FAMILIES))}))


def get_family(name: str, plugins: Sequence[str] = ()) -> Family:
    """The family ``name``, imported the first time it is asked for, after the ``plugins`` modules
    (``--plugin``; trainables/plugins.py) that may register it."""
    import_plugins(plugins)
    if name not in _registry and name in built_in_family_names():
        importlib.import_module(f"{__name__}.{name}")
    if name not in _registry:
        load_entry_points(FAMILIES)
    if name not in _registry:
        raise UnknownFamilyError(
            f"unknown family {name!r}; known: {', '.join(family_names())} (a family of your own: install its "
            "package with an 'attention_sweeper.families' entry point, or name its module with --plugin)"
        )
    return _registry.get(name)
