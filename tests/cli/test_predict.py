"""`mlplab predict`: the class, the top probabilities, and a warning for an input unlike the training
images."""

from __future__ import annotations

import io

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


def test_predict_reads_the_image_not_its_name_and_names_the_model_as_typed(
    api, capsys, tmp_path, monkeypatch
):
    """A PNG saved as .txt was sent as text/plain (a 415); "../models/5" reached model 5 by its path."""
    model = api.post("/jobs", json=learner_body())["id"]
    api.train()
    digit = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(digit).line([(14, 4), (14, 24)], fill=0, width=3)  # a 1
    digit.save(tmp_path / "digit.txt", format="PNG")
    status, out, err = mlplab(capsys, "predict", str(tmp_path / "digit.txt"), "--model", str(model))
    assert status == 0 and out.startswith("predicted "), err
    # "-": standard input, as `mlplab sweep -` reads it ("No such file '-'")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "digit.txt").read_bytes())))
    assert mlplab(capsys, "predict", "-", "--model", str(model))[1] == out
    status, out, err = mlplab(capsys, "predict", str(tmp_path / "digit.txt"), "--model", f"../models/{model}")
    assert status == 1 and out == "" and "404" in err, err
    status, out, err = mlplab(capsys, "predict", str(tmp_path / "digit.txt"), "--model", "0")
    assert status == 1 and "--model: Input should be a model id, an integer from 1" in err, (
        err
    )  # not path.model
    status, _, err = mlplab(capsys, "alias", " ", str(model))
    assert (
        status == 2
        and err == "mlplab: the alias is empty: lowercase letters, digits and dashes, e.g. champion\n"
    )


def test_predict_of_a_file_that_is_no_image_says_so_whatever_its_name(api, capsys, tmp_path):
    model = api.post("/jobs", json=learner_body())["id"]
    api.train()
    (tmp_path / "notes.txt").write_text("hello")
    status, out, err = mlplab(capsys, "predict", str(tmp_path / "notes.txt"), "--model", str(model))
    assert status == 1 and out == "", err  # was: a 415 on text/plain
    assert "not a BMP, GIF, JPEG, PNG or WebP image" in err, err
    digit = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(digit).line([(14, 4), (14, 24)], fill=0, width=3)
    digit.save(tmp_path / "one.gif")  # another format the API reads
    status, out, err = mlplab(capsys, "predict", str(tmp_path / "one.gif"), "--model", str(model))
    assert status == 0 and out.startswith("predicted "), err


def test_predict_warns_that_a_model_near_chance_learned_nothing(api, capsys, tmp_path):
    model = api.post("/jobs", json=learner_body(learning_rate=1e-6))["id"]  # learns next to nothing
    api.train()
    digit = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(digit).line([(14, 4), (14, 24)], fill=0, width=3)  # a 1
    digit.save(tmp_path / "one.png")
    status, out, err = mlplab(capsys, "predict", str(tmp_path / "one.png"), "--model", str(model))
    assert status == 0 and out.startswith("predicted "), err
    assert "near chance level" in err and "the model learned next to nothing" in err, err
