"""A study's figures: PNG bytes drawn by optuna.visualization.matplotlib, and the same data as JSON.

FIGURES names them: history (best validation accuracy so far against the trial number), parallel
(parallel coordinates), slice (each parameter against the objective), importance. Only succeeded
trials are drawn: a pruned trial's accuracy is not a final one.

Optuna's matplotlib functions draw through pyplot and restyle it (ggplot): each figure is drawn
under service.plots' lock, inside an rc_context that undoes the style, on the Agg backend, and closed.
"""

from __future__ import annotations

import io
import json
import textwrap
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from optuna.exceptions import ExperimentalWarning
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.study import Study

from service.plots import DPI, DRAWING
from service.quoting import counted
from service.search.engine import TrialRecord, best_trial, build_study, importance, importance_warning, varied
from service.search.study import StudyCreate, stored_point
from service.selection import BY_VALIDATION
from service.store.models import JobStatus

matplotlib.use("Agg")  # a service draws into bytes, never into a window

FIGURES = ("history", "parallel", "slice", "importance")
OBJECTIVE = "validation accuracy"  # as the figures' axes say it; their JSON names it BY_VALIDATION


def _draw(study: Study, name: str, fields: list[str]) -> Figure:
    """Figure `name` of the study; importance ranks `fields` alone (those varied among its succeeded trials)."""
    from optuna.visualization import matplotlib as ovm  # imports pyplot: only where a figure is drawn

    ax: Any
    if name == "history":
        ax = ovm.plot_optimization_history(study, target_name=OBJECTIVE)
    elif name == "parallel":
        ax = ovm.plot_parallel_coordinate(study, target_name=OBJECTIVE)
    elif name == "slice":
        ax = ovm.plot_slice(study, target_name=OBJECTIVE)
    elif name == "importance":
        evaluator = PedAnovaImportanceEvaluator()
        ax = ovm.plot_param_importances(study, evaluator=evaluator, params=fields, target_name=OBJECTIVE)
    else:
        raise ValueError(f"unknown figure {name!r}; the figures are {', '.join(FIGURES)}")
    axes = list(np.ravel(ax))  # plot_slice: an array of axes, one per parameter
    fig = cast(Figure, axes[0].figure)
    if name == "slice":  # optuna's fixed size crowds the axes and their log-scale tick labels
        fig.set_size_inches(3.2 * len(axes) + 1.5, 4.8)
        for each in axes:
            each.xaxis.set_minor_formatter(NullFormatter())
            each.tick_params(axis="x", labelrotation=30)
    return fig


def figure_png(name: str, config: StudyCreate, trials: Sequence[TrialRecord]) -> bytes:
    """One of FIGURES as PNG bytes (an empty plot, still a PNG, before any trial has succeeded)."""
    from matplotlib import pyplot as plt

    study = build_study(config, trials)
    buf = io.BytesIO()
    with DRAWING, matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # the matplotlib backend is "experimental"
        warnings.filterwarnings("ignore", "No artists with labels")  # an empty study has no legend
        # only the importance figure ranks fields: the others need not work them out
        fields = varied(config, trials) if name == "importance" else []
        fig = _draw(study, name, fields)
        if name == "importance":  # what its bars rest on, as the JSON and the pages say it
            fig.text(0, -0.02, importance_caption(config, trials, fields), ha="left", va="top", fontsize=8)
        try:
            fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
        finally:
            plt.close(fig)
    return buf.getvalue()


def importance_caption(config: StudyCreate, trials: Sequence[TrialRecord], fields: list[str]) -> str:
    """The trials the importance rests on (pruned and failed ones left out) and what they are worth."""
    succeeded = len(_succeeded(trials))
    said = importance_warning(succeeded, importance(config, trials), fields)
    text = said[0].upper() + said[1:] if said else f"From {counted(succeeded, 'succeeded trial')}"
    return textwrap.fill(f"{text}; pruned and failed trials are left out.", 110)


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _succeeded(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    return sorted((t for t in trials if t.status == JobStatus.succeeded), key=lambda t: t.number)


def _axis(config: StudyCreate, field: str, done: list[TrialRecord]) -> dict[str, Any]:
    """One parameter's values over the succeeded trials; a choice as its index into `labels`."""
    dim = config.space[field]
    if dim.choice is None:
        kind = "int" if dim.int_ is not None else "float"
        return {"name": field, "kind": kind, "log": dim.log, "values": [t.params[field] for t in done]}
    # a trial holds its value as its stored spec does (0 as 0.0, an object with its defaults): matched so
    point = stored_point(config.base)
    keys = [point({field: c}) for c in dim.choice]
    return {
        "name": field,
        "kind": "choice",
        "labels": [_label(c) for c in dim.choice],
        "values": [keys.index(point({field: t.params[field]})) for t in done],
    }


def history_data(config: StudyCreate, trials: Sequence[TrialRecord]) -> dict[str, Any]:
    done = _succeeded(trials)
    best = [best_trial(done[: i + 1]) for i in range(len(done))]
    return {
        "objective": BY_VALIDATION,
        "number": [t.number for t in done],
        "value": [t.value for t in done],
        "best": [b.value if b else None for b in best],
    }


def parallel_data(config: StudyCreate, trials: Sequence[TrialRecord]) -> dict[str, Any]:
    """The parameters as axes, each succeeded trial a line through them ending at its objective."""
    done = _succeeded(trials)
    return {
        "objective": BY_VALIDATION,
        "number": [t.number for t in done],
        "value": [t.value for t in done],
        "params": [_axis(config, field, done) for field in config.space],
    }


def importance_data(config: StudyCreate, trials: Sequence[TrialRecord]) -> dict[str, Any]:
    scores = importance(config, trials)
    return {"objective": BY_VALIDATION, "params": list(scores), "importance": list(scores.values())}


# The slice plot and the parallel coordinates show the same table: each parameter and the objective.
_DATA: dict[str, Callable[[StudyCreate, Sequence[TrialRecord]], dict[str, Any]]] = {
    "history": history_data,
    "parallel": parallel_data,
    "slice": parallel_data,
    "importance": importance_data,
}


def figure_data(name: str, config: StudyCreate, trials: Sequence[TrialRecord]) -> dict[str, Any]:
    """What figure `name` shows, as JSON-able lists for the dashboard to draw itself."""
    if name not in _DATA:
        raise ValueError(f"unknown figure {name!r}; the figures are {', '.join(FIGURES)}")
    return _DATA[name](config, trials)
