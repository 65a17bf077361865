"""Provenance's pieces: the dataset's digest, and a reproduction's comparison."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from service.ml.provenance import Provenance, Trained, collect, compare, dataset_sha256
from service.ml.spec import TrainSpec
from service.ml.train import train
from service.ml.weights import Weights, load_weights
from tests.factories import make_tiny_dataset


def test_the_dataset_digest_changes_with_any_pixel_or_label():
    data = make_tiny_dataset()
    same = make_tiny_dataset()
    assert dataset_sha256(data) == dataset_sha256(same) and len(dataset_sha256(data)) == 64
    pixel = data.test_images.copy()
    pixel[7, 300] += np.float32(1 / 255)
    label = data.train_labels.copy()
    label[0] = (label[0] + 1) % 10
    for changed in (
        dataclasses.replace(data, test_images=pixel),
        dataclasses.replace(data, train_labels=label),
    ):
        assert dataset_sha256(changed) != dataset_sha256(data)


def _trained(seed: int = 0) -> tuple[Weights, float, float, Provenance]:
    spec = TrainSpec(backend="numpy", hidden_layers=[8], epochs=1, seed=seed, validation_size=100)
    data = make_tiny_dataset()
    result = train(spec, data)
    return (
        load_weights(result.weights),
        result.train_accuracy,
        result.test_accuracy,
        collect(spec, data, {}),
    )


def test_a_comparison_of_equal_weights_on_one_machine():
    weights, train_acc, test_acc, made = _trained()
    report = compare(
        3, Trained(weights, train_acc, test_acc, made), Trained(weights, train_acc, test_acc, made)
    )
    assert report.weights_identical and report.max_weight_difference == 0.0
    assert report.environment_changes == {} and report.validation_accuracy_change is None
    assert report.summary == "bit-identical weights, on the same machine type"


def test_a_comparison_names_the_difference_and_the_machine_fields_that_changed():
    weights, train_acc, test_acc, made = _trained()
    moved = [(W.copy(), b.copy()) for W, b in weights.params]
    moved[0][0][3, 2] += np.float32(0.25)
    elsewhere = made.model_copy(update={"host": "other", "cpu": "Another CPU", "threads": made.threads + 1})
    report = compare(
        3,
        Trained(weights, train_acc, test_acc, made, 0.9),
        Trained(Weights(weights.spec, moved), train_acc, test_acc - 0.01, elsewhere, 0.92),
    )
    assert not report.weights_identical and report.max_weight_difference == np.float32(0.25)
    assert report.test_accuracy_change == (test_acc - 0.01) - test_acc
    assert report.validation_accuracy_change == 0.92 - 0.9
    assert report.environment_changes == {
        "threads": [made.threads, made.threads + 1],
        "cpu": [made.cpu, "Another CPU"],
        "host": [made.host, "other"],
    }
    assert report.summary == (
        f"weights differ by up to 0.25; test accuracy moved {report.test_accuracy_change:+.4%}, "
        "on another machine type (threads, cpu differ)"
    )
    unknown = compare(
        3, Trained(weights, train_acc, test_acc, None), Trained(weights, train_acc, test_acc, made)
    )
    assert unknown.environment_changes is None and "no provenance" in unknown.summary


def test_the_blas_recorded_is_numpys_after_scipy_loaded_its_own():
    """scipy.linalg brings its own OpenBLAS, which threadpoolctl lists first: recorded as NumPy's, a worker
    that had imported SciPy told reproductions of the same machine that its BLAS differed."""
    import numpy
    import scipy.linalg  # noqa: F401  (its libscipy_openblas, loaded)

    from service.ml.blas import numpy_blas

    recorded = numpy_blas()
    assert recorded["user_api"] == "blas"
    libs = Path(numpy.__file__).parent.parent / "numpy.libs"
    assert Path(recorded["filepath"]).parent == libs or not libs.exists(), recorded["filepath"]


def test_a_resumed_job_keeps_the_threads_its_earlier_attempts_trained_on():
    """Killed on 1 thread, resumed after epoch 1 on 2: its provenance said 2 threads and no change, so its
    reproduction's weights differed (by 0.347) with no environment change named."""
    from service.ml.provenance import resumed, stored_provenance

    made = _trained()[3]
    one, two = made.model_copy(update={"threads": 1}), made.model_copy(update={"threads": 2})
    now = resumed(stored_provenance(one.model_dump(mode="json")), two, 2)
    assert (now.threads, now.threads_changed) == (1, [(2, 2)])
    again = resumed(now, two, 3)  # resumed once more, on the threads it ended on: nothing new
    assert (again.threads, again.threads_changed) == (1, [(2, 2)])
    # changed to 2 at epoch 4, then killed; checkpointed after 2: epoch 3 is trained again, on 1 thread
    redone = resumed(one.model_copy(update={"threads_changed": [(4, 2)]}), one, 3)
    assert (redone.threads, redone.threads_changed) == (1, [])
    fresh = compare(1, Trained(*_trained()[:3], two), Trained(*_trained()[:3], now))
    assert fresh.environment_changes == {"threads": [2, 1], "threads_changed": [[], [(2, 2)]]}
    assert stored_provenance({"mlplab": "0.0.1"}) is None  # a form this version cannot read: none


def test_a_reproduction_by_another_mlplab_says_so():
    """0.2.0 batches an epoch otherwise than 0.1.0: its weights differ 'on the same machine type', unexplained."""
    weights, train_acc, test_acc, made = _trained()
    old = made.model_copy(update={"mlplab": "0.1.0"})
    report = compare(
        3, Trained(weights, train_acc, test_acc, old), Trained(weights, train_acc, test_acc, made)
    )
    assert (
        report.summary
        == f"bit-identical weights, on the same machine type, by mlplab {made.mlplab} (the original: 0.1.0)"
    )
