"""`aisvc render`: the compiled objects of AIService files, or errors naming the fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from aiservice_operator.cli.main import app
from typer.testing import CliRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["render", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_renders_several_files_and_documents() -> None:
    code, out, err = run(
        "-f", str(EXAMPLES / "pipeline.yaml"), "-f", str(EXAMPLES / "sentiment.yaml")
    )
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert [k for k in kinds if k[0] == "Service"] == [
        ("Service", "sentiment-stage"),
        ("Service", "topic-stage"),
        ("Service", "sentiment"),
    ]
    roles = [
        o["metadata"]["labels"]["aiservice.dev/role"] for o in objects if o["kind"] == "Trigger"
    ]
    # One per consumes entry; the pipeline's two stages also log inputs, replies and
    # feedback.
    decision_log = ["decision-inputs", "decision-replies", "decision-feedback"]
    assert sorted(roles) == sorted(["primary"] * 3 + decision_log * 2)


def test_steady_state_routes_by_revision_and_uses_the_event_store_url() -> None:
    code, out, _ = run(
        "-f", str(EXAMPLES / "fraud-split.yaml"), "--event-store-url", "http://es:9000"
    )
    assert code == 0
    service, trigger = yaml.safe_load_all(out)
    percents = {t["tag"]: t["percent"] for t in service["spec"]["traffic"]}
    assert percents == {"stable": 90, "v1": 0, "v2": 10}
    sink = trigger["spec"]["delivery"]["deadLetterSink"]["uri"]
    assert sink.startswith("http://es:9000/v1/namespaces/payments/aiservices/fraud/")


def test_reads_stdin() -> None:
    code, out, _ = run("-f", "-", stdin=(EXAMPLES / "sentiment.yaml").read_text())
    assert code == 0
    assert "kind: Service" in out


def test_errors_name_file_document_and_field(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "pipeline.yaml").read_text()))
    docs[1]["spec"]["models"][0]["uri"] = "ftp://nowhere"
    docs[1]["spec"]["delivery"] = {"backoffDelay": "1 s"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    code, out, err = run("-f", str(bad))
    assert code == 1
    assert out == ""
    assert f"{bad} (document 2): spec.models[0].uri:" in err
    assert f"{bad} (document 2): spec.delivery.backoffDelay:" in err
    assert "(document 1)" not in err


def test_unreadable_and_non_mapping_input_fail(tmp_path: Path) -> None:
    code, _, err = run("-f", str(tmp_path / "missing.yaml"))
    assert code == 1 and "cannot read" in err
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    code, _, err = run("-f", str(scalar))
    assert code == 1 and "not a YAML mapping" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    code, _, err = run("-f", str(broken))
    assert code == 1 and "cannot read" in err


def test_an_empty_file_or_one_aiservice_twice_fails_with_a_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n")
    code, out, err = run("-f", str(empty))
    assert code == 1 and out == ""
    assert f"{empty}: no YAML documents" in err
    twice = EXAMPLES / "sentiment.yaml"
    code, out, err = run("-f", str(twice), "-f", str(twice))
    assert code == 1 and out == ""
    assert "is given twice" in err and "(first in " in err


def test_a_directory_renders_its_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text((EXAMPLES / "sentiment.yaml").read_text())
    (tmp_path / "b.yml").write_text((EXAMPLES / "fraud-split.yaml").read_text())
    (tmp_path / "notes.txt").write_text("not yaml")
    code, out, err = run("-f", str(tmp_path))
    assert code == 0, err
    services = [o["metadata"]["name"] for o in yaml.safe_load_all(out) if o["kind"] == "Service"]
    assert services == ["sentiment", "fraud"]
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    code, _, err = run("-f", str(empty_dir))
    assert code == 1 and "no .yaml or .yml files" in err


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: 1\nb: [\n")
    code, _, err = run("-f", str(broken))
    assert code == 1
    assert f'in "{broken}", line' in err


def test_version_and_completion() -> None:
    import json

    result = CliRunner().invoke(app, ["version", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["api"] == "aiservice.dev/v1alpha1"
    shown = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in shown.stdout


def error_lines(err: str) -> list[str]:
    """stderr's lines; each must be an `error: ` line (no traceback, nothing else)."""
    lines = [line for line in err.splitlines() if line]
    assert lines and all(line.startswith("error: ") for line in lines), err
    return lines


BAD_MANIFESTS = {
    "empty-spec": ["spec.function: is required", "spec.models: must list at least one"],
    "labels": [
        "metadata.labels: must be an object, not list",
        "metadata.annotations.a: must map strings to strings, not int",
    ],
    "latin1": ["cannot read: not UTF-8 text (byte 0xe9 at offset"],
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
@pytest.mark.parametrize("command", ["render", "up"])
def test_bad_manifests_get_one_error_line_each(tmp_path: Path, case: str, command: str) -> None:
    text = (EXAMPLES / "sentiment.yaml").read_text()
    base = yaml.safe_load(text)
    path = tmp_path / f"{case}.yaml"
    if case == "empty-spec":
        path.write_text(yaml.safe_dump({**base, "spec": {}}))
    elif case == "labels":
        meta = {**base["metadata"], "labels": [1, 2], "annotations": {"a": 1}}
        path.write_text(yaml.safe_dump({**base, "metadata": meta}))
    else:
        path.write_bytes(text.encode() + "# café\n".encode("latin-1"))
    state = ["--state-dir", str(tmp_path / "state")] if command == "up" else []
    result = CliRunner().invoke(app, [command, "-f", str(path), *state])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = error_lines(result.stderr)
    for want in BAD_MANIFESTS[case]:
        assert any(str(path) in line and want in line for line in lines), (want, lines)


def test_a_corrupt_broker_log_is_one_error_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "broker.db").write_bytes(b"not a database at all" * 200)
    result = CliRunner().invoke(
        app,
        ["up", "-f", str(EXAMPLES / "sentiment.yaml"), "--state-dir", str(state),
         "--broker-port", "0", "--serving-port", "0", "--event-store-port", "0", "--no-live"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert error_lines(result.stderr) == [
        f"error: cannot start: {state / 'broker.db'} is not a broker log this version can "
        "read (file is not a database); move it away to start with an empty log (the events "
        "it holds are then not delivered)"
    ]
