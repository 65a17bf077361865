"""Adaptive search (issue 14): Optuna decides, mlplab's jobs run the trials, the database remembers.

No HTTP and no database here: every function takes the study's configuration (`StudyCreate`) and
its trials as plain data (`TrialRecord`s read from the jobs) and returns a decision.

    problems = check_study(config)                 # [] or every (name, reason) for one 422
    for params in next_trials(config, trials):      # when the study starts, and whenever a trial ends
        queue TrainSpec.model_validate(config.base | params) as trial number len(trials), then append it
    should_prune(config, trials, number, epoch, validation_accuracy)   # after each epoch of a trial
    best_trial(trials); importance(config, trials) of varied(config, trials); figure_png / figure_data(name, config, trials)

study    StudyCreate, Dimension, check_study, Invalid, SAMPLERS, PRUNERS, TEST_PRUNERS, grid_size, space_size, space_word, sampler_note
engine   TrialRecord, STATES, IN_FLIGHT, trials_to_queue, next_params, next_trials, should_prune,
         best_trial, importance, importance_warning, varied, analysis, build_study
figures  FIGURES, figure_png, figure_data (imported on its own: it brings matplotlib)
"""

from service.search.engine import (
    FEW_TRIALS_FOR_IMPORTANCE,
    IN_FLIGHT,
    STATES,
    TrialRecord,
    analysis,
    best_trial,
    build_study,
    importance,
    importance_warning,
    next_params,
    next_trials,
    should_prune,
    trials_to_queue,
    varied,
)
from service.search.study import (
    PRUNERS,
    SAMPLERS,
    TEST_PRUNERS,
    TPE_RANDOM_TRIALS,
    Dimension,
    Invalid,
    StudyCreate,
    check_study,
    grid_size,
    sampler_note,
    space_size,
    space_word,
)

__all__ = [
    "FEW_TRIALS_FOR_IMPORTANCE",
    "IN_FLIGHT",
    "PRUNERS",
    "SAMPLERS",
    "STATES",
    "TEST_PRUNERS",
    "TPE_RANDOM_TRIALS",
    "Dimension",
    "Invalid",
    "StudyCreate",
    "TrialRecord",
    "analysis",
    "best_trial",
    "build_study",
    "check_study",
    "grid_size",
    "space_size",
    "space_word",
    "importance",
    "importance_warning",
    "next_params",
    "next_trials",
    "sampler_note",
    "should_prune",
    "trials_to_queue",
    "varied",
]
