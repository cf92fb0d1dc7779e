"""`rtcfleet stacks order`: the deploy order of the example stacks, and stacks it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.stack_files import load_stack_file
from infra.stack_order import dependencies
from infra.stack_settings import settings_from_values
from rtcfleet.cli import app

STACKS = Path(__file__).resolve().parents[2] / "stacks"
runner = CliRunner()
AWS_EXAMPLES = ("dev-aws-us-east-1", "prod-aws-us-east-1", "prod-aws-eu-west-1")


def _order(*args: str) -> dict:
    result = runner.invoke(app, ["stacks", "order", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_example_stacks_home_then_replicas_then_global() -> None:
    document = _order("--stacks-dir", str(STACKS))
    order = document["order"]
    assert order[-1] == "prod-global"
    assert order.index("prod-aws-us-east-1") < order.index("prod-aws-eu-west-1")
    position = {stack: index for index, stack in enumerate(order)}
    for node in document["stacks"]:
        assert all(position[needed] < position[node["stack"]] for needed in node["after"])
    phases = document["phases"]
    assert {"stack": "prod-aws-us-east-1", "env": "prod"} in phases["home"]
    assert {"stack": "prod-aws-eu-west-1", "env": "prod"} in phases["replicas"]
    assert phases["global"] == [{"stack": "prod-global", "env": "prod"}]


def test_text_output_numbers_the_phases() -> None:
    result = runner.invoke(app, ["stacks", "order", "--stacks-dir", str(STACKS), "--env", "prod"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "1 home     prod-aws-us-east-1" in lines
    assert "2 replicas prod-aws-eu-west-1  (after prod-aws-us-east-1)" in lines
    assert lines[-1].startswith("3 global   prod-global  (after ")
    assert not any("dev-" in line for line in lines)


@pytest.mark.parametrize("stack", AWS_EXAMPLES)
def test_dependencies_are_the_ones_the_settings_model_reads(stack: str) -> None:
    values = load_stack_file(STACKS / f"Pulumi.{stack}.yaml").values
    assert dependencies(stack, values)[1] == settings_from_values(stack, values).referenced_stacks()


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    """The AWS example stacks and prod-global, to break one at a time."""
    for stack in (*AWS_EXAMPLES, "prod-global"):
        shutil.copy(STACKS / f"Pulumi.{stack}.yaml", tmp_path)
    global_file = tmp_path / "Pulumi.prod-global.yaml"
    text = global_file.read_text()
    for azure in ("prod-azure-westeurope", "prod-azure-northeurope"):
        text = text.replace(f"    - {azure}\n", "")
    global_file.write_text(text)
    return tmp_path


def _edit(stacks: Path, stack: str, old: str, new: str) -> None:
    path = stacks / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _refused(stacks: Path) -> str:
    result = runner.invoke(app, ["stacks", "order", "--stacks-dir", str(stacks)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    return result.stderr


def test_the_copied_stacks_order(stacks: Path) -> None:
    assert _order("--stacks-dir", str(stacks))["order"] == [
        "dev-aws-us-east-1",
        "prod-aws-us-east-1",
        "prod-aws-eu-west-1",
        "prod-global",
    ]


def test_a_region_without_its_home_stack(stacks: Path) -> None:
    (stacks / "Pulumi.prod-aws-us-east-1.yaml").unlink()
    message = _refused(stacks)
    assert "region stack prod-aws-eu-west-1 has no home stack prod-aws-us-east-1" in message


def test_a_region_without_an_image_reads_the_image_stack(stacks: Path) -> None:
    _edit(stacks, "prod-aws-eu-west-1", "  rtcfleet:imageId:", "  # rtcfleet:imageId:")
    message = _refused(stacks)
    assert "prod-aws-eu-west-1 reads outputs of prod-image, which has no stack file" in message


def test_a_region_reading_images_from_the_global_stack_is_a_cycle(stacks: Path) -> None:
    _edit(
        stacks,
        "prod-aws-eu-west-1",
        "  rtcfleet:imageId:",
        "  rtcfleet:imageStack: prod-global\n  #",
    )
    message = _refused(stacks)
    assert "stacks read each other's outputs: prod-aws-eu-west-1 -> prod-global" in message


def test_two_regions_that_name_each_other_home_are_a_cycle(stacks: Path) -> None:
    _edit(stacks, "prod-aws-us-east-1", "homeRegion: us-east-1", "homeRegion: eu-west-1")
    message = _refused(stacks)
    assert "read each other's outputs: prod-aws-eu-west-1 -> prod-aws-us-east-1" in message


def test_a_region_missing_its_home_region_setting(stacks: Path) -> None:
    _edit(stacks, "dev-aws-us-east-1", "  rtcfleet:homeRegion: us-east-1\n", "")
    assert "dev-aws-us-east-1: rtcfleet:homeRegion is not set" in _refused(stacks)


def test_an_image_stack_in_a_later_phase_is_refused(stacks: Path) -> None:
    _edit(
        stacks, "dev-aws-us-east-1", "  rtcfleet:imageId:", "  rtcfleet:imageStack: dev-global\n  #"
    )
    (stacks / "Pulumi.dev-global.yaml").write_text(
        "config:\n  rtcfleet:regions:\n    - prod-aws-us-east-1\n"
    )
    message = _refused(stacks)
    assert "dev-aws-us-east-1 (home) reads outputs of dev-global (global)" in message


def test_an_image_stack_deploys_before_the_regions_that_read_it(stacks: Path) -> None:
    _edit(
        stacks, "dev-aws-us-east-1", "  rtcfleet:imageId:", "  rtcfleet:imageStack: dev-image\n  #"
    )
    (stacks / "Pulumi.dev-image.yaml").write_text("config:\n  rtcfleet:regions:\n    - us-east-1\n")
    document = _order("--stacks-dir", str(stacks), "--env", "dev")
    assert document["order"] == ["dev-image", "dev-aws-us-east-1"]
    assert document["phases"]["images"] == [{"stack": "dev-image", "env": "dev"}]


def test_an_empty_directory(tmp_path: Path) -> None:
    assert "no stack files" in _refused(tmp_path)


def test_set_images_moves_only_the_image_line(stacks: Path, tmp_path: Path) -> None:
    report = tmp_path / "bake.json"
    report.write_text(json.dumps({"imageIds": {"us-east-1": "ami-0123456789abcdef0"}}))
    before = (stacks / "Pulumi.prod-aws-eu-west-1.yaml").read_text()
    result = runner.invoke(
        app, ["stacks", "set-images", "--bake-report", str(report), "--stacks-dir", str(stacks)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["dev-aws-us-east-1", "prod-aws-us-east-1"]
    for stack in ("dev-aws-us-east-1", "prod-aws-us-east-1"):
        values = load_stack_file(stacks / f"Pulumi.{stack}.yaml").values
        assert values["rtcfleet:imageId"] == "ami-0123456789abcdef0"
    assert (stacks / "Pulumi.prod-aws-eu-west-1.yaml").read_text() == before
