"""The one-pass student: its spec, what one step pulls it towards, and the `distil` command on a tiny run."""

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vetohash.errors import SpecError
from vetohash.hasher import Hasher
from vetohash.modelfile import read_model, write_model
from vetohash.specs import preset
from vetohash_authority.cli import cli, main
from vetohash_authority.distillation import distil_step, student_spec

from .fixtures import TINY_COPY_SPEC as TINY_COPY
from .fixtures import one_thread  # noqa: F401  (autouse)


def tiny_teacher() -> Hasher:
    torch.manual_seed(0)
    return Hasher(TINY_COPY, TINY_COPY.build().eval())


def test_the_student_is_the_teacher_without_the_mirror_pass():
    spec = student_spec(preset("copy-cnn"))
    assert spec.arch == {**preset("copy-cnn").arch, "mirror": False}
    assert spec.name == "copy-cnn-one-pass"
    assert (spec.preprocess, spec.bits) == (preset("copy-cnn").preprocess, preset("copy-cnn").bits)
    assert spec.weight_shapes() == preset("copy-cnn").weight_shapes()  # the teacher's weights load as they are


@pytest.mark.parametrize("name", ["paper-cnn", "copy-cnn-one-pass"])
def test_only_a_mirror_averaged_copy_cnn_can_be_a_teacher(name):
    spec = preset("paper-cnn") if name == "paper-cnn" else student_spec(preset("copy-cnn"))
    with pytest.raises(SpecError, match="mirror: true"):
        student_spec(spec)


def test_a_step_pulls_the_image_and_its_mirror_towards_the_teacher_embedding_of_the_image():
    teacher = tiny_teacher().network
    student = student_spec(TINY_COPY).build().eval()
    student.load_state_dict(teacher.state_dict())
    views = torch.from_numpy(np.random.default_rng(0).normal(size=(8, 3, 32, 32)).astype(np.float32))
    optimiser = torch.optim.SGD(student.parameters(), lr=0.05)
    with torch.no_grad():
        target = teacher(views)
        before = [float(((student(x) - target) ** 2).mean()) for x in (views, views.flip(3))]
    loss = distil_step(student, teacher, optimiser, views)
    with torch.no_grad():
        after = [float(((student(x) - target) ** 2).mean()) for x in (views, views.flip(3))]
    assert loss == pytest.approx(sum(before) / 2, rel=1e-5)  # the loss is the mean over both inputs
    assert after[0] < before[0] and after[1] < before[1]


def test_distil_command_writes_a_one_pass_student_of_the_teacher(tmp_path):
    teacher_path, out = tmp_path / "teacher.vhm", tmp_path / "student.vhm"
    teacher = tiny_teacher()
    write_model(teacher_path, teacher, {"kind": "pretrained"})
    result = CliRunner().invoke(cli, ["distil", "--teacher", str(teacher_path), "--out", str(out), "--synthetic", "3",
                                      "--steps", "2", "--batch", "2", "--seed", "3", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    student, meta = read_model(out)
    assert student.spec == student_spec(TINY_COPY) and summary["spec"] == student.spec.name
    assert meta["kind"] == "distilled" and meta["steps"] == summary["steps"] == 2 and meta["seed"] == 3
    assert meta["sources"] == 3 and len(meta["losses"]) == 2
    # Two small steps from the teacher's weights: changed, but still close to them.
    moved = [np.abs(student.arrays()[k] - teacher.arrays()[k]).max() for k in teacher.arrays()]
    assert 0 < max(moved) < 0.05


def test_distil_refuses_a_teacher_without_the_mirror_pass_in_one_line(tmp_path, monkeypatch, capsys):
    spec = student_spec(TINY_COPY)
    torch.manual_seed(0)
    write_model(tmp_path / "one.vhm", Hasher(spec, spec.build()), {})
    monkeypatch.setattr(sys, "argv", ["authority", "distil", "--teacher", str(tmp_path / "one.vhm"), "--out",
                                      str(tmp_path / "s.vhm"), "--synthetic", "2", "--steps", "1", "--quiet"])
    with pytest.raises(SystemExit) as exited:
        main()
    [line] = capsys.readouterr().err.splitlines()
    assert exited.value.code == 2 and line.startswith("error: ") and "mirror: true" in line
    assert not (tmp_path / "s.vhm").exists()
