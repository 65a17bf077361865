"""Two models image by image: where they disagree, whether chance alone would split them so (McNemar), and a
gallery.

Both read the predictions the worker stored with each model (inference.predictions): no split is
recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from service import plots
from service.api.deps import (
    MODEL_REF,
    InferenceDep,
    ModelRef,
    reader_router,
    resolve_model,
)
from service.api.inference import require_validation
from service.api.paging import PageLimit, PageOffset
from service.api.params import DIGITS
from service.api.presenters import png_response
from service.api.routes.plots import DATASET_FIGURE_DOC
from service.api.schemas import (
    MODEL_PATTERN,
    ClassDifferencePublic,
    DisagreementPublic,
    DisagreementsPublic,
    EvalSplit,
)
from service.errors import DATASET_UNAVAILABLE_DOC, NOT_TRAINED_DOC, invalid
from service.ml.data import Dataset
from service.ml.spec import SplitName
from service.ml.splits import file_of, scored_indices
from service.selection import ALPHA, Disagreement, disagreement, p_text

router = reader_router("compare", "/compare", responses=NOT_TRAINED_DOC | DATASET_UNAVAILABLE_DOC)

Only = Literal["a_right", "b_right", "both_wrong"]
ModelA = Annotated[str, Query(pattern=MODEL_PATTERN, description=f"Model A: {MODEL_REF}")]
ModelB = Annotated[str, Query(pattern=MODEL_PATTERN, description=f"Model B: {MODEL_REF}")]
OnlyQuery = Annotated[
    Only | None,
    Query(
        description="Only the images A gets right (and B wrong), B gets right, or neither does while they "
        "disagree (both_wrong counts also the images both get wrong alike)"
    ),
]


@dataclass(frozen=True)
class Compared:
    a_ref: ModelRef
    b_ref: ModelRef
    split: EvalSplit
    file: SplitName  # the dataset's file the split's images are in
    data: Dataset
    truth: np.ndarray
    a: np.ndarray  # A's predicted class of each image of the split
    b: np.ndarray
    counted: np.ndarray  # the images compared (on train, those both trained on), in index order
    result: Disagreement

    def selected(self, only: Only | None) -> np.ndarray:
        """The disagreeing images, all or those `only` names, in index order."""
        if only is None:
            return self.counted[self.result.disagreeing]
        right_a, right_b = self.a == self.truth, self.b == self.truth
        keep = {
            "a_right": right_a & ~right_b,
            "b_right": right_b & ~right_a,
            "both_wrong": ~right_a & ~right_b & (self.a != self.b),
        }[only]
        chosen: np.ndarray = self.counted[keep[self.counted]]
        return chosen


async def compared(a: ModelA, b: ModelB, inference: InferenceDep, split: EvalSplit = "test") -> Compared:
    """A's and B's predictions of a split, and how they differ: 422 unless two models of one dataset (and on
    validation, both with a validation split)."""
    ref_a, ref_b = await resolve_model(a, inference, "query.a"), await resolve_model(b, inference, "query.b")
    if ref_a.id == ref_b.id:
        both = f" ({a} and {b} are both model {ref_b.id})" if a != b else ""
        raise invalid("query.b", f"model {ref_b.id} is A too{both}: compare two different models")
    spec_a, spec_b = (await inference.weights(ref_a.id)).spec, (await inference.weights(ref_b.id)).spec
    dataset_a, dataset_b = spec_a.dataset, spec_b.dataset
    if dataset_a != dataset_b:
        raise invalid(
            "query.b", f"model {ref_b.id} was trained on {dataset_b}, model {ref_a.id} on {dataset_a}"
        )
    if split == "validation":
        for ref, spec in ((ref_a, spec_a), (ref_b, spec_b)):
            require_validation(ref.id, spec, "query.split")
    file = file_of(split)
    data = await inference.dataset(dataset_a)
    truth = data.split(file).labels
    pred_a = await inference.predicted_labels(ref_a.id, file)
    pred_b = await inference.predicted_labels(ref_b.id, file)
    # the images both count: on train none either held out; on validation those both held out (largest
    # remainder quotas do not nest: a smaller validation split is not always inside a larger one)
    counted = np.intersect1d(scored_indices(truth, spec_a, split), scored_indices(truth, spec_b, split))
    result = disagreement(truth[counted], pred_a[counted], pred_b[counted], len(data.classes))
    return Compared(ref_a, ref_b, split, file, data, truth, pred_a, pred_b, counted, result)


ComparedDep = Annotated[Compared, Depends(compared)]


@router.get("/disagreements", response_model=DisagreementsPublic)
def read_disagreements(
    c: ComparedDep,
    only: OnlyQuery = None,
    offset: PageOffset = 0,
    limit: PageLimit = 100,
) -> DisagreementsPublic:
    """Two models image by image: how many images each gets right that the other gets wrong, McNemar's exact
    p-value on those two counts, each class's accuracy under both, and the images they disagree on (paged).

    The p-value asks whether these two models could be equally accurate on such images; it says nothing
    of their configurations: two seeds of one configuration often differ beyond chance by it (a sweep's
    replicates compare configurations). split=validation compares them on the images that ranked them."""
    r = c.result
    indices = c.selected(only)
    return DisagreementsPublic(
        a=c.a_ref.id,
        b=c.b_ref.id,
        split=c.split,
        images=len(c.counted),
        a_right_b_wrong=r.a_right_b_wrong,
        b_right_a_wrong=r.b_right_a_wrong,
        both_right=r.both_right,
        both_wrong=r.both_wrong,
        # the disagreements that are neither's alone are both wrong, differently: the rest of both_wrong alike
        both_wrong_alike=r.both_wrong - (len(r.disagreeing) - r.a_right_b_wrong - r.b_right_a_wrong),
        p_value=r.p_value,
        beyond_chance=r.p_value < ALPHA,
        per_class=[
            ClassDifferencePublic(
                label=label,
                name=c.data.classes[label],
                images=n,
                a_accuracy=acc_a,
                b_accuracy=acc_b,
                difference=None if acc_a is None or acc_b is None else acc_a - acc_b,
            )
            for label, n, acc_a, acc_b in r.per_class
        ],  # fmt: skip
        data=[
            DisagreementPublic(index=int(i), label=int(c.truth[i]), a=int(c.a[i]), b=int(c.b[i]))
            for i in indices[offset : offset + limit]
        ],
        count=len(indices),
    )


@router.get("/disagreements.png", response_class=Response, responses=DATASET_FIGURE_DOC)
async def disagreements_png(
    c: ComparedDep,
    only: OnlyQuery = None,
    offset: PageOffset = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Most images shown"), DIGITS] = 36,
) -> Response:
    """The images two models disagree on, each captioned 'true, A says, B says'."""
    indices = c.selected(only)
    shown = indices[offset : offset + limit]
    names = c.data.classes
    captions = [f"{names[c.truth[i]]}, {names[c.a[i]]}, {names[c.b[i]]}" for i in shown]
    title = (
        f"models A = {c.a_ref.id} and B = {c.b_ref.id} on the {c.split} split: {len(shown)} of the {len(indices):,} images "
        f"they disagree on (true, A says, B says); McNemar {p_text(c.result.p_value)}"
    )
    images = c.data.split(c.file).images[shown]
    with plots.DRAWING.place():
        png = await run_in_threadpool(plots.gallery_png, images, captions, title, shown, "no disagreements")
    return png_response(png)
