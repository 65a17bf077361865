"""train() with both backends: parity, determinism, divergence, cancellation, resume."""

from __future__ import annotations

import io
import math
import re
import time

import numpy as np
import pytest

from service.ml.data import Split
from service.ml.evaluation import EvalSets, PredictionsError, decode_predictions, encode_predictions
from service.ml.network import make_network
from service.ml.spec import TrainSpec
from service.ml.train import (
    Callbacks,
    Checkpoint,
    EpochEnd,
    Plan,
    StepProgress,
    TrainingCancelled,
    TrainingError,
    loss_interval,
    train,
)
from service.ml.weights import WeightsError, dump_weights, load_weights, predict_proba
from tests.factories import no_holdout


def _arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files if k.startswith(("W", "b"))}


def _run(spec, data, **kw):
    losses = []
    on_progress = lambda e: losses.append(e.loss) if isinstance(e, StepProgress) else None  # noqa: E731
    result = train(spec, data, Callbacks(on_progress), **kw)
    return result, losses


@pytest.fixture(params=["onednn", "blas"])
def cpu_matmul(request, monkeypatch):
    """Both libraries for torch's products on CPU; oneDNN on every layer, however small."""
    if request.param == "onednn":
        from service.ml import torch_onednn

        monkeypatch.setattr(torch_onednn, "MIN_WEIGHTS", 0)
    return request.param


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_numpy_and_torch_agree_step_by_step(activation, cpu_matmul, tiny_dataset):
    """Same initial weights, same batches, plain SGD: the two backends trace the same losses."""
    common = {
        "hidden_layers": [64, 32],
        "activation": activation,
        "optimizer": "sgd",
        "learning_rate": 0.1,
        "epochs": 1,
        "batch_size": 12,
        "log_every": 1,
    }
    np_result, np_losses = _run(no_holdout(backend="numpy", **common), tiny_dataset)
    t_result, t_losses = _run(
        no_holdout(backend="torch", **common), tiny_dataset, device="cpu", cpu_matmul=cpu_matmul
    )
    assert len(np_losses) == len(t_losses) == 50
    np.testing.assert_allclose(np_losses, t_losses, atol=1e-4)
    images = tiny_dataset.test_images
    np.testing.assert_allclose(
        predict_proba(np_result.weights, images), predict_proba(t_result.weights, images), atol=1e-5
    )


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_numpy_and_torch_optimizers_agree(optimizer, cpu_matmul, tiny_dataset):
    common = {
        "hidden_layers": [32],
        "activation": "relu",
        "optimizer": optimizer,
        "learning_rate": 0.01,
        "l2": 0.001,
        "epochs": 1,
        "batch_size": 20,
        "log_every": 1,
    }
    _, np_losses = _run(no_holdout(backend="numpy", **common), tiny_dataset)
    _, t_losses = _run(
        no_holdout(backend="torch", **common), tiny_dataset, device="cpu", cpu_matmul=cpu_matmul
    )
    np.testing.assert_allclose(np_losses, t_losses, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_l2_decays_the_weights_not_the_biases_in_both_backends(optimizer, tiny_dataset):
    """A strong L2: the spec adds l2 * W to the weights' gradient only; both backends end on the same biases."""
    common = {
        "hidden_layers": [32],
        "activation": "relu",
        "optimizer": optimizer,
        "learning_rate": 0.05 if optimizer != "adam" else 0.01,
        "l2": 0.5,
        "epochs": 2,
        "batch_size": 50,
    }
    np_w = _arrays(train(no_holdout(backend="numpy", **common), tiny_dataset).weights)
    t_w = _arrays(train(no_holdout(backend="torch", **common), tiny_dataset, device="cpu").weights)
    for key in np_w:
        np.testing.assert_allclose(np_w[key], t_w[key], atol=2e-4, err_msg=key)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_network_trains_on_its_rows_of_the_split_as_on_a_copy_of_them(backend, tiny_dataset):
    """Jobs train on rows of the shared split (the validation images left out) without copying them:
    the same steps as on a copy of those rows, and nothing from the rows left out."""
    spec = no_holdout(backend=backend, hidden_layers=[16], activation="relu", learning_rate=0.5)
    split = tiny_dataset.split("train")
    rows = np.flatnonzero(np.arange(len(split.labels)) % 3 != 1)  # two rows in three
    copy = Split(split.images[rows], split.labels[rows])
    cpu = {"device": "cpu"}  # exact equality: the same device for all three
    by_rows, by_copy = make_network(spec, split, rows, **cpu), make_network(spec, copy, **cpu)
    other = make_network(spec, split, **cpu)  # every row: steps on other images
    batches = [np.random.default_rng(k).permutation(len(rows))[:32] for k in range(5)]
    losses = [[net.step(idx, 0.5) for idx in batches] for net in (by_rows, by_copy, other)]
    assert losses[0] == losses[1] != losses[2]
    for (W, b), (W2, b2) in zip(by_rows.export(), by_copy.export(), strict=True):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_exported_weights_are_a_snapshot_that_training_leaves_alone(backend, tiny_dataset):
    """Early stopping keeps an epoch's export while training goes on: it must be a copy, whatever the
    layers' shapes (a width-1 layer's transpose is already contiguous, so a lazy copy is a view)."""
    spec = no_holdout(backend=backend, hidden_layers=[1], activation="relu", epochs=1, learning_rate=0.5)
    net = make_network(spec, tiny_dataset.split("train"))
    kept = net.export()
    before = [(W.copy(), b.copy()) for W, b in kept]
    for start in range(0, 320, 32):
        net.step(np.arange(start, start + 32), 0.5)
    assert all(
        np.array_equal(W, W0) and np.array_equal(b, b0) for (W, b), (W0, b0) in zip(kept, before, strict=True)
    )
    assert any(
        not np.array_equal(W, W0) for (W, _), (W0, _) in zip(net.export(), before, strict=True)
    )  # trained


def test_same_seed_same_weights_other_seed_different(tiny_dataset):
    spec = no_holdout(backend="numpy", hidden_layers=[32, 16], activation="tanh", epochs=2, batch_size=32)
    a = _arrays(train(spec, tiny_dataset).weights)
    b = _arrays(train(spec, tiny_dataset).weights)
    c = _arrays(train(spec.model_copy(update={"seed": 1}), tiny_dataset).weights)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # bit-identical
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_progress_is_reported_every_log_every_steps_and_each_epoch(tiny_dataset):
    events = []
    spec = no_holdout(backend="numpy", hidden_layers=[16], epochs=2, batch_size=100, log_every=2)
    result = train(spec, tiny_dataset, Callbacks(events.append))
    steps = [e for e in events if isinstance(e, StepProgress)]
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    # 6 steps an epoch, 12 in all; the first too, where the curve starts (the teacher's began at step 79)
    assert [s.step for s in steps] == [1, 2, 4, 6, 8, 10, 12]
    assert steps[0].loss == pytest.approx(np.log(10), abs=0.3)  # untrained: near chance's ln 10
    odd = train(spec.model_copy(update={"log_every": 4}), tiny_dataset, Callbacks(events.append))
    assert [e.step for e in events[-(len(events) - len(steps) - 2) :] if isinstance(e, StepProgress)] == [
        1,
        4,
        6,
        8,
        12,
    ]
    assert odd.test_accuracy == result.test_accuracy
    assert {s.steps for s in steps} == {12}
    assert [e.epoch for e in epochs] == [1, 2]
    assert result.test_accuracy == epochs[-1].test_accuracy
    assert sum(map(sum, result.confusion_test)) == len(tiny_dataset.test_labels)
    assert np.trace(result.confusion_test) / len(tiny_dataset.test_labels) == pytest.approx(
        result.test_accuracy
    )


def test_an_epochs_seconds_leave_out_the_time_its_progress_writes_waited(tiny_dataset):
    """A worker's loss write that waits for the database's lock pauses training: an epoch of 0.8 s of
    such waits was recorded as 0.8 s slower, and a sweep's time column blamed its configuration."""
    spec = no_holdout(backend="numpy", hidden_layers=[16], epochs=2, batch_size=100, log_every=2)
    quick = train(spec, tiny_dataset).epochs
    waits = []

    def blocked(event):  # 3 reports an epoch (and the first step's), each held up 0.2 s
        if isinstance(event, StepProgress):
            time.sleep(0.2)
            waits.append(0.2)

    slow = train(spec, tiny_dataset, Callbacks(blocked)).epochs
    assert len(waits) == 7
    assert all(e.seconds < 0.2 for e in slow), ([e.seconds for e in quick], [e.seconds for e in slow])


def test_an_epochs_loss_is_the_mean_over_its_images_not_over_its_batches(tiny_dataset):
    """A batch of fewer images weighs less in the epoch's figure (385 images at 128: 97, 96, 96, 96)."""
    events = []
    spec = no_holdout(
        backend="numpy", hidden_layers=[16], epochs=1, batch_size=128, train_limit=385, log_every=1
    )
    train(spec, tiny_dataset, Callbacks(events.append))
    losses = [e.loss for e in events if isinstance(e, StepProgress)]
    sizes = [97, 96, 96, 96]
    assert len(losses) == len(sizes)
    (epoch,) = [e for e in events if isinstance(e, EpochEnd)]
    assert epoch.loss == pytest.approx(np.dot(losses, sizes) / 385, rel=1e-6)
    assert epoch.loss != pytest.approx(np.mean(losses), rel=1e-6)


def test_a_reported_loss_is_the_mean_over_the_images_since_the_one_before(tiny_dataset):
    """The epoch's last step reported its batch alone: a curve read one batch's noise at each epoch's end."""
    spec = {"backend": "numpy", "hidden_layers": [16], "epochs": 1, "batch_size": 128, "train_limit": 385}
    every_step = _run(no_holdout(**spec, log_every=1), tiny_dataset)[1]
    _, reported = _run(no_holdout(**spec, log_every=2), tiny_dataset)
    sizes = [97, 96, 96, 96]
    assert (
        reported
        == pytest.approx(  # the first step's alone, where the curve starts
            [every_step[0], every_step[1], np.dot(every_step[2:], sizes[2:]) / 192], rel=1e-6
        )
    )
    assert reported[-1] != pytest.approx(every_step[-1], rel=1e-3)


def test_a_long_job_reports_at_most_max_losses_at_a_wider_interval(tiny_dataset):
    # 600 images at batch 1, 3 epochs: 1,800 steps, each reported with log_every 1, unless capped
    spec = TrainSpec(
        backend="numpy", hidden_layers=[8], epochs=3, batch_size=1, log_every=1, validation_size=0
    )
    events = []
    train(spec, tiny_dataset, Callbacks(events.append), max_losses=400)
    steps = [e for e in events if isinstance(e, StepProgress)]
    assert len(steps) <= 400
    assert {s.every for s in steps} == {5}  # ceil(1800 / (400 - 3 epochs))
    assert [s.step for s in steps] == [1, *range(5, 1801, 5)]  # 600-step epochs end on the interval
    assert [s.step for s in steps if s.step % 600 == 0] == [600, 1200, 1800]


def test_the_loss_interval_keeps_the_spec_when_it_fits_and_widens_it_when_not():
    spec = TrainSpec(
        backend="numpy", epochs=200, batch_size=1, log_every=1
    )  # the largest job: 12,000,000 steps
    every = loss_interval(spec, 12_000_000, 10_000)
    assert (
        every == 1225 and 12_000_000 // every + spec.epochs <= 10_000
    )  # every interval's step, each epoch's end
    assert loss_interval(spec.model_copy(update={"log_every": 5000}), 12_000_000, 10_000) == 5000
    assert loss_interval(spec, 9_000, 10_000) == 1
    assert loss_interval(spec, 12_000_000, None) == 1


def test_train_limit_uses_only_that_many_images(tiny_dataset):
    spec = no_holdout(
        backend="numpy", hidden_layers=[16], epochs=1, batch_size=10, train_limit=50, log_every=1
    )
    events = []
    result = train(spec, tiny_dataset, Callbacks(events.append))
    assert max(e.step for e in events if isinstance(e, StepProgress)) == 5
    assert sum(map(sum, result.confusion_train)) == 50


def test_divergence_names_epoch_step_and_learning_rate(tiny_dataset):
    spec = no_holdout(backend="numpy", activation="relu", learning_rate=10, epochs=3, batch_size=32)
    with pytest.raises(TrainingError, match=r"epoch \d+, step \d+ \(learning rate 10\)"):
        train(spec, tiny_dataset)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_diverged_job_keeps_the_losses_before_and_names_a_random_init(tiny_dataset, backend):
    """relu with N(0, 1) weights diverged in a few steps, the message naming only the learning rate (a
    newcomer tried 0.01, which diverged too) and the curve empty: the steps before it were not kept."""
    spec = no_holdout(
        backend=backend,
        activation="relu",
        init="random",
        learning_rate=10,
        epochs=3,
        batch_size=32,
        log_every=1000,
    )
    events: list = []
    with pytest.raises(TrainingError) as failed:
        train(
            spec, tiny_dataset, Callbacks(events.append), **({"device": "cpu"} if backend == "torch" else {})
        )
    step = int(re.search(r"step (\d+)", str(failed.value)).group(1))
    assert "or init he or glorot: random draws every weight from N(0, 1)" in str(failed.value)
    assert (
        f"he draws the first layer's {math.sqrt(tiny_dataset.train_images.shape[1] / 2):.0f} times smaller"
        in str(failed.value)
    )
    logged = [e for e in events if isinstance(e, StepProgress)]
    # the mean of the steps before the one that diverged (the third, say), at the step before it
    assert step > 1 and logged[-1].step == step - 1 and math.isfinite(logged[-1].loss), logged


def test_torch_divergence_is_reported_the_same_way(tiny_dataset):
    spec = no_holdout(backend="torch", activation="relu", learning_rate=10, epochs=3, batch_size=32)
    with pytest.raises(TrainingError, match=r"epoch \d+, step \d+ \(learning rate 10\)"):
        train(spec, tiny_dataset, device="cpu")


@pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning"
)
def test_finite_weights_whose_outputs_overflow_fail_the_job_as_diverged(tiny_dataset, monkeypatch):
    """Eight layers of 512 at learning rate 10 kept finite weights (max 7e10) whose outputs were NaN: the job
    succeeded, argmax read every image as class 0, and predict answered 200 with null probabilities."""
    from service.ml import train as training

    checked = training.checked_weights

    def huge(net, plan, epoch):  # finite, and past what float32 activations hold
        return [(W * np.float32(1e30), b) for W, b in checked(net, plan, epoch)]

    monkeypatch.setattr(training, "checked_weights", huge)
    spec = no_holdout(backend="numpy", activation="relu", hidden_layers=[16, 16], epochs=2, batch_size=32)
    with pytest.raises(
        TrainingError, match=r"diverged: its outputs are no longer finite .* at epoch 1, step \d+"
    ):
        train(spec, tiny_dataset)


def test_should_stop_cancels_within_a_step(tiny_dataset):
    spec = no_holdout(backend="numpy", hidden_layers=[16], epochs=5, batch_size=10, log_every=1000)
    calls = []
    with pytest.raises(TrainingCancelled, match="epoch 1, step 7"):
        train(spec, tiny_dataset, Callbacks(should_stop=lambda: calls.append(1) or len(calls) >= 7))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_resume_from_checkpoint_ends_where_an_uninterrupted_run_ends(backend, tiny_dataset):
    spec = no_holdout(
        backend=backend,
        hidden_layers=[32],
        activation="relu",
        optimizer="adam",
        learning_rate=0.01,
        epochs=3,
        batch_size=50,
    )
    full = train(spec, tiny_dataset, device="cpu")
    checkpoints: list[Checkpoint] = []
    train(spec, tiny_dataset, Callbacks(on_checkpoint=checkpoints.append), device="cpu")
    assert [c.epoch for c in checkpoints] == [1, 2]
    resumed = train(spec, tiny_dataset, resume=checkpoints[0], device="cpu")
    assert [e.epoch for e in resumed.epochs] == [2, 3]
    a, b = _arrays(full.weights), _arrays(resumed.weights)
    if backend == "numpy":
        assert all(np.array_equal(a[k], b[k]) for k in a)
    else:
        assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed.test_accuracy == full.test_accuracy


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_checkpoint_that_does_not_load_means_starting_over_not_failing(backend, tiny_dataset, caplog):
    spec = no_holdout(backend=backend, hidden_layers=[16], epochs=2, batch_size=100)
    full = train(spec, tiny_dataset, device="cpu")
    resumed = train(spec, tiny_dataset, resume=Checkpoint(1, b"written by another version"), device="cpu")
    assert [e.epoch for e in resumed.epochs] == [1, 2]
    a, b = _arrays(full.weights), _arrays(resumed.weights)
    # from the initial weights, as if never interrupted
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert (
        "the checkpoint after epoch 1 cannot be loaded" in caplog.text
        and "training from epoch 1" in caplog.text
    )


def test_weight_file_round_trip_and_format(tiny_dataset):
    spec = no_holdout(backend="torch", hidden_layers=[8, 4], epochs=1)
    result = train(spec, tiny_dataset, device="cpu")
    weights = load_weights(result.weights)
    assert weights.spec == spec
    assert [W.shape for W, _ in weights.params] == [(784, 8), (8, 4), (4, 10)]
    again = load_weights(dump_weights(weights.spec, weights.params))
    assert all(np.array_equal(W1, W2) for (W1, _), (W2, _) in zip(weights.params, again.params, strict=True))
    p = weights.predict_proba(tiny_dataset.test_images[:5])
    assert p.shape == (5, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_stored_weights_and_predictions_refuse_each_others_files_and_broken_ones(tiny_dataset):
    weights = train(no_holdout(backend="numpy", hidden_layers=[4], epochs=1), tiny_dataset).weights
    predictions = encode_predictions(np.full((3, 10), 0.1, dtype=np.float32))
    with pytest.raises(
        WeightsError, match="unknown weight format 'mlplab-predictions/1', expected 'mlplab-mlp/1'"
    ):
        load_weights(predictions)
    with pytest.raises(PredictionsError, match="unknown predictions format 'mlplab-mlp/1'"):
        decode_predictions(weights)
    with np.load(io.BytesIO(weights)) as z:
        arrays = {k: z[k] for k in z.files if k != "W2"}
    without_a_layer = io.BytesIO()
    np.savez(without_a_layer, **arrays)
    for broken in (b"", b"not an archive", without_a_layer.getvalue()):
        with pytest.raises(WeightsError, match="not an mlplab weight file"):
            load_weights(broken)
    with pytest.raises(PredictionsError, match="not an mlplab predictions file"):
        decode_predictions(b"not an archive")


def test_a_checkpoint_past_the_jobs_epochs_means_starting_over(tiny_dataset, caplog):
    """A checkpoint at or after the last epoch was never written for this job: nothing would be left to train."""
    spec = no_holdout(backend="numpy", hidden_layers=[16], epochs=2, batch_size=100)
    checkpoints: list[Checkpoint] = []
    train(spec.model_copy(update={"epochs": 3}), tiny_dataset, Callbacks(on_checkpoint=checkpoints.append))
    resumed = train(spec, tiny_dataset, resume=checkpoints[1])
    assert [e.epoch for e in resumed.epochs] == [1, 2]
    assert resumed.weights == train(spec, tiny_dataset).weights
    assert "the checkpoint after epoch 2 cannot be loaded (ValueError: the job has 2 epochs)" in caplog.text


def test_cosine_schedule_decays_from_the_learning_rate_towards_zero_over_all_steps(tiny_dataset):
    spec = no_holdout(backend="numpy", learning_rate=0.5, lr_schedule="cosine", epochs=2, batch_size=60)
    plan = Plan(spec, tiny_dataset.split("train"), EvalSets.of(spec, tiny_dataset).trained_indices)
    assert (plan.steps_per_epoch, plan.total_steps) == (10, 20)
    rates = [plan.learning_rate(step) for step in range(1, 21)]
    assert rates[0] == 0.5 and rates[10] == pytest.approx(0.25)  # step 11 of 20: half-way
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    assert 0 < rates[-1] < 0.005  # the last step's: near zero, not zero (the decay reaches 0 after it)
    constant = Plan(spec.model_copy(update={"lr_schedule": "constant"}), plan.examples, plan.rows)
    assert {constant.learning_rate(step) for step in range(1, 21)} == {0.5}


def test_should_stop_cancels_within_the_final_evaluation(tiny_dataset):
    """Asked to stop once the last step was done, a job evaluated every train and test image first (70,000
    images of a large network took 18 s; a SIGTERM outlived the worker's grace and the job ran again)."""
    spec = no_holdout(backend="numpy", hidden_layers=[16], epochs=1, batch_size=10, log_every=1000)
    steps = -(-len(tiny_dataset.split("train").images) // 10)
    calls = []
    with pytest.raises(TrainingCancelled, match="while evaluating epoch 1"):
        train(spec, tiny_dataset, Callbacks(should_stop=lambda: calls.append(1) or len(calls) > steps))


def test_the_loss_interval_never_reports_more_than_max_losses_with_the_first_step_too():
    """Every report counted, the first step's and each epoch's end included, over many job shapes."""
    for steps_per_epoch in (1, 2, 3, 7, 10, 99):
        for epochs in (1, 2, 3, 5):
            for most in (epochs + 1, epochs + 2, 10, 37, 400):
                spec = TrainSpec(backend="numpy", epochs=epochs, log_every=1)
                total = steps_per_epoch * epochs
                every = loss_interval(spec, total, most)
                reported = (
                    {1}
                    | set(range(every, total + 1, every))
                    | {steps_per_epoch * e for e in range(1, epochs + 1)}
                )
                assert len(reported) <= most, (steps_per_epoch, epochs, most, every)
