"""The state branch's documented JSON Schema matches the record models."""

import json
from pathlib import Path

import jsonschema

from velvet_runner.records import Job

STATE = Path(__file__).resolve().parent.parent / "state"


def test_job_schema_is_current():
    shipped = json.loads((STATE / "job.schema.json").read_text())
    generated = Job.model_json_schema()
    shipped_props = {k: v for k, v in shipped.items() if k not in ("$schema", "$id")}
    assert shipped_props == generated, (
        "state/job.schema.json is stale: regenerate it from velvet_runner.records.Job")


def test_a_real_job_record_validates(tmp_path):
    from velvet_runner.machine import Flow, State
    from velvet_runner.records import ConsumerRow, Event, new_job_id, utcnow

    now = utcnow()
    job = Job(job_id=new_job_id(), credential="HK_X", vendor="heroku",
              flow_type=Flow.OPERATIONAL, env="prod", status=State.INIT, created_at=now,
              updated_at=now, consumers=[ConsumerRow(consumer_id="a", kind="heroku_config_var",
                                                     target="t")],
              events=[Event(at=now, actor="me", action="create", to_state="init")])
    schema = json.loads((STATE / "job.schema.json").read_text())
    jsonschema.validate(json.loads(job.to_json()), schema)
    lock = {"job_id": job.job_id, "credential": "HK_X", "flow_type": "operational",
            "acquired_at": "2026-01-01T00:00:00Z"}
    jsonschema.validate(lock, json.loads((STATE / "lock.schema.json").read_text()))
