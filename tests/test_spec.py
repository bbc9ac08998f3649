"""Job spec parsing, DAG checks and file/line/field error reporting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sharedml.jobs.spec import (
    DatasetRef,
    JobSpec,
    JobSpecError,
    OutputRef,
    TaskSpec,
    load_job,
    parse_job,
    parse_ref,
)

VALID = """\
job: credit-risk
parties:
  bank:  {role: guest, data: {train: default_credit_guest}}
  telco: {role: host,  data: {train: default_credit_host}}
  shop:  {role: host,  data: {train: shop_credit}}
timeout: 30
tasks:
  align:  {component: psi,            inputs: {data: $train}}
  bins:   {component: hetero_binning, inputs: {data: align.data}, params: {bins: 16}}
  model:
    component: hetero_secureboost
    inputs: {train: bins.data}
    params: {trees: 20, depth: 5}
    parties: [bank, telco]
  report: {component: evaluate,       inputs: {predictions: model.predictions}, depends_on: [bins]}
"""


def job_error(text: str, source: str = "job.yaml") -> str:
    with pytest.raises(JobSpecError) as info:
        parse_job(text, source)
    return str(info.value)


def test_valid_job_parses() -> None:
    job = parse_job(VALID)
    assert job.job == "credit-risk"
    assert job.timeout == 30
    assert job.parties["telco"].role == "host"
    assert job.parties["bank"].data == {"train": "default_credit_guest"}
    assert job.tasks["bins"].params == {"bins": 16}
    assert job.tasks["model"].parties == ["bank", "telco"]
    assert job.tasks["align"].parties is None
    assert job.tasks["report"].depends_on == ["bins"]


def test_defaults() -> None:
    job = parse_job("job: j\nparties: {a: {role: guest}}\ntasks: {t: {component: c}}\n")
    assert job.timeout == 60
    assert job.parties["a"].data == {}
    assert job.tasks["t"] == TaskSpec(component="c")
    assert job.topological_order() == ["t"]


def test_load_job_from_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(VALID)
    assert load_job(path) == parse_job(VALID)


def test_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(JobSpecError, match=re.escape(str(path))):
        load_job(path)


def test_parse_ref() -> None:
    assert parse_ref("$train") == DatasetRef("train")
    assert parse_ref("bins.data") == OutputRef("bins", "data")
    for bad in ["train", "$", "a.b.c", "$a.b", "bins.", ".data", "a b.c"]:
        with pytest.raises(ValueError):
            parse_ref(bad)


def test_topological_order_is_deterministic_yaml_order() -> None:
    text = """\
job: j
parties: {a: {role: guest}}
tasks:
  late:   {component: c, inputs: {x: early.out}}
  solo:   {component: c}
  early:  {component: c}
  last:   {component: c, depends_on: [late, solo]}
"""
    job = parse_job(text)
    assert job.topological_order() == ["solo", "early", "late", "last"]
    assert job.upstream("last") == {"late", "solo"}
    assert job.upstream("early") == set()


def test_upstream_and_tasks_for() -> None:
    job = parse_job(VALID)
    assert job.topological_order() == ["align", "bins", "model", "report"]
    assert job.upstream("report") == {"model", "bins"}
    assert job.upstream("align") == set()
    assert job.tasks_for("shop") == ["align", "bins", "report"]
    assert job.tasks_for("bank") == ["align", "bins", "model", "report"]
    assert job.parties_for("model") == ["bank", "telco"]
    with pytest.raises(KeyError, match="nobody"):
        job.tasks_for("nobody")


def test_cycle_reported_with_path() -> None:
    text = """\
job: j
parties: {a: {role: guest}}
tasks:
  a: {component: c, inputs: {x: b.out}}
  b: {component: c, inputs: {x: a.out}}
  c: {component: c, inputs: {x: a.out}}
"""
    message = job_error(text)
    assert "dependency cycle: a -> b -> a" in message
    assert "job.yaml, line 4, tasks.a:" in message


def test_self_dependency_is_a_cycle() -> None:
    text = "job: j\nparties: {a: {role: guest}}\ntasks:\n  t: {component: c, depends_on: [t]}\n"
    assert "dependency cycle: t -> t" in job_error(text)


def test_longer_cycle_follows_data_flow() -> None:
    text = """\
job: j
parties: {a: {role: guest}}
tasks:
  x: {component: c, depends_on: [z]}
  y: {component: c, depends_on: [x]}
  z: {component: c, depends_on: [y]}
"""
    # x needs z, z needs y, y needs x: data flows x -> y -> z -> x
    assert "dependency cycle: x -> y -> z -> x" in job_error(text)


def test_unknown_task_reference_with_line() -> None:
    text = """\
job: j
parties: {a: {role: guest}}
tasks:
  first: {component: c}
  second:
    component: c
    inputs:
      data: frist.data
"""
    message = job_error(text)
    assert "job.yaml, line 8, tasks.second.inputs.data: unknown task 'frist'" in message
    assert "first, second" in message


def test_unknown_depends_on() -> None:
    text = "job: j\nparties: {a: {role: guest}}\ntasks:\n  t:\n    component: c\n    depends_on: [t, ghost]\n"
    message = job_error(text)
    assert "line 6, tasks.t.depends_on.1: unknown task 'ghost'" in message


def test_bad_reference_syntax() -> None:
    text = "job: j\nparties: {a: {role: guest}}\ntasks:\n  t: {component: c, inputs: {x: train}}\n"
    message = job_error(text)
    assert "line 4, tasks.t.inputs.x:" in message
    assert "'$alias'" in message and "'train'" in message


def test_typo_field_reported_with_line_and_suggestion() -> None:
    text = """\
job: j
parties:
  a: {role: guest}
tasks:
  t:
    componnt: psi
"""
    message = job_error(text)
    assert "job.yaml, line 6, tasks.t.componnt: Extra inputs are not permitted" in message
    assert "did you mean 'component'?" in message
    assert "allowed fields: component, inputs, params, parties, depends_on" in message
    # the missing required field is reported too, on its own line
    assert "job.yaml, line 5, tasks.t.component: Field required" in message
    assert len(message.splitlines()) == 2


def test_bad_timeout_type_with_line() -> None:
    text = 'job: j\nparties: {a: {role: guest}}\ntimeout: "abc"\ntasks: {t: {component: c}}\n'
    message = job_error(text)
    assert message.startswith("job.yaml, line 3, timeout: Input should be a valid number")


def test_non_positive_timeout() -> None:
    text = "job: j\nparties: {a: {role: guest}}\ntimeout: 0\ntasks: {t: {component: c}}\n"
    assert "line 3, timeout: Input should be greater than 0" in job_error(text)


def test_multiple_errors_one_per_line_in_file_order() -> None:
    text = """\
job: bad name
parties: {a: {role: guest}}
timeout: -1
tasks:
  t: {component: c, parms: {}}
"""
    lines = job_error(text).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "job.yaml, line 1, job",
        "job.yaml, line 3, timeout",
        "job.yaml, line 5, tasks.t.parms",
    ]


def test_yaml_syntax_error_with_line() -> None:
    text = "job: j\nparties:\n  a: {role: guest\ntasks: {}\n"
    message = job_error(text, "broken.yaml")
    assert re.match(r"broken\.yaml, line \d+: invalid YAML", message)
    line = int(re.search(r"line (\d+)", message)[1])  # type: ignore[index]
    assert line in (3, 4)


def test_yaml_tab_indentation_error_line() -> None:
    message = job_error("job: j\nparties:\n\ta: 1\n")
    assert message.startswith("job.yaml, line 3: invalid YAML")


def test_python_tags_are_refused() -> None:
    message = job_error("job: !!python/object/apply:os.system ['true']\n")
    assert "invalid YAML" in message and "line 1" in message


def test_missing_alias_names_party_and_its_aliases() -> None:
    text = """\
job: j
parties:
  bank: {role: guest, data: {train: g, test: t}}
  shop: {role: host, data: {eval: e}}
tasks:
  align: {component: psi, inputs: {data: $train}}
  local: {component: c, inputs: {data: $train}, parties: [bank]}
"""
    message = job_error(text)
    assert "line 6, tasks.align.inputs.data: party 'shop' has no dataset alias 'train'" in message
    assert "its aliases: eval" in message
    assert "party 'bank'" not in message
    assert "tasks.local" not in message  # only bank runs it, and bank has the alias


def test_missing_alias_party_without_data() -> None:
    text = "job: j\nparties:\n  a: {role: guest}\ntasks:\n  t: {component: c, inputs: {d: $x}}\n"
    assert "party 'a' has no dataset alias 'x' in its data (its aliases: none)" in job_error(text)


def test_parties_that_hold_no_data_need_no_alias() -> None:
    text = "job: j\nparties:\n  a: {role: client, data: {x: d}}\n  b: {role: aggregator}\n  c: {role: dealer}\n" \
           "tasks:\n  t: {component: c, inputs: {d: $x}}\n"
    assert parse_job(text).parties_for("t") == ["a", "b", "c"]
    assert "party 'e' has no dataset alias 'x'" in job_error(text.replace("c: {role: dealer}", "e: {role: client}"))


def test_task_parties_must_be_job_parties() -> None:
    text = """\
job: j
parties:
  bank: {role: guest}
  telco: {role: host}
tasks:
  t:
    component: c
    parties: [bank, tleco]
"""
    message = job_error(text)
    assert ("job.yaml, line 8, tasks.t.parties.1: unknown party 'tleco'; did you mean 'telco'? (known: bank, telco)"
            in message)


def test_names_are_checked() -> None:
    message = job_error("job: j\nparties: {a: {role: r}}\ntasks:\n  9lives: {component: c}\n")
    assert "line 4, tasks.9lives" in message
    assert "should match pattern" in message


def test_at_least_one_party_and_task() -> None:
    message = job_error("job: j\nparties: {}\ntasks: {}\n")
    assert "line 2, parties:" in message
    assert "line 3, tasks:" in message


def test_empty_document() -> None:
    assert job_error("", "empty.yaml").startswith("empty.yaml: Input should be a valid dictionary")


def test_direct_construction_validates_graph() -> None:
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        JobSpec(
            job="j",
            parties={"a": {"role": "guest"}},  # type: ignore[dict-item]
            tasks={"t": {"component": "c", "inputs": {"x": "nope.out"}}},  # type: ignore[dict-item]
        )
