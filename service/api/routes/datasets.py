"""Datasets: what is available, and any image as a PNG."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Response

from service.api.deps import InferenceDep, SettingsDep, reader_router
from service.api.paging import PageOffset
from service.api.params import DIGITS, FileSplit
from service.api.presenters import dataset_image, dataset_public
from service.api.schemas import DatasetsPublic, LabelPublic, LabelsPublic
from service.errors import DATASET_UNAVAILABLE_DOC, Responses
from service.imaging import to_png
from service.ml.data import DATASETS
from service.ml.spec import DatasetName

router = reader_router("datasets", "/datasets")

PNG: Responses = {200: {"content": {"image/png": {}}, "description": "The image, white digit on black"}}


@router.get("", response_model=DatasetsPublic)
def read_datasets(settings: SettingsDep) -> DatasetsPublic:
    """The datasets, whether their files are present, and their split sizes."""
    data = [dataset_public(name, settings) for name in DATASETS]
    return DatasetsPublic(data=data, count=len(data))


@router.get("/{name}/{split}", response_model=LabelsPublic, responses=DATASET_UNAVAILABLE_DOC)
async def read_labels(
    name: DatasetName,
    split: FileSplit,
    inference: InferenceDep,
    offset: PageOffset = 0,
    limit: Annotated[int, Query(ge=1, le=1000), DIGITS] = 100,
) -> LabelsPublic:
    """A page of a split's labels, for browsing its images."""
    data = await inference.dataset(name)
    labels = data.split(split)[1]
    return LabelsPublic(
        name=name,
        split=split,
        classes=list(data.classes),
        count=len(labels),
        data=[
            LabelPublic(index=offset + i, label=int(v)) for i, v in enumerate(labels[offset : offset + limit])
        ],
    )


@router.get(
    "/{name}/{split}/{index}.png",
    response_class=Response,
    responses=PNG | DATASET_UNAVAILABLE_DOC,
)
async def read_image(
    name: DatasetName,
    split: FileSplit,
    index: Annotated[int, Path(ge=0), DIGITS],
    inference: InferenceDep,
    scale: Annotated[int, Query(ge=1, le=16, description="Upscale factor (nearest neighbour)"), DIGITS] = 1,
) -> Response:
    """One image of a split, as PNG."""
    image, label = dataset_image(await inference.dataset(name), split, index)
    return Response(
        to_png(image, scale=scale),
        media_type="image/png",
        headers={"Cache-Control": "public, max-age=86400", "X-Label": str(label)},
    )
