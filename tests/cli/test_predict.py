"""`mlplab predict`: the class, the top probabilities, and a warning for an input unlike the training
images."""

from __future__ import annotations

from PIL import Image, ImageDraw

from tests.cli.conftest import mlplab
from tests.factories import learner_body


def test_predict_warns_of_an_input_unlike_the_training_images(api, capsys, tmp_path):
    model = api.post("/jobs", json=learner_body())
    api.train()
    text = Image.new("L", (120, 24), 255)
    ImageDraw.Draw(text).text((4, 6), "Hello world", fill=0)
    text.save(tmp_path / "text.png")
    status, out, err = mlplab(capsys, "predict", str(tmp_path / "text.png"), "--model", str(model["id"]))
    assert status == 0 and out.startswith("predicted ")
    assert "warning: The input looks unlike the training images" in err and "pixels tall" in err
