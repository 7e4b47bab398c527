"""Snapshot of what the Dagster UI lists (as dagster-open-platform does): asset keys, groups, kinds, partitions per
asset, descriptions, checks, jobs, schedules and sensors. A change to any of them shows up as a diff to review.

Regenerate after an intended change (one command):

    BIOREVIEW_UPDATE_SNAPSHOT=1 python -m pytest bioreview_assets_tests/test_definitions_snapshot.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def _partitions(partitions_def) -> dict | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return {dim.name: dim.partitions_def.get_partition_keys() for dim in partitions_def.partitions_defs}
    return {"key": partitions_def.get_partition_keys()}


def definitions_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "description": node.description,
            "partitions": _partitions(node.partitions_def),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        spec = graph.get_check_spec(check_key)
        checks[f"{check_key.asset_key.to_user_string()}.{check_key.name}"] = {
            "description": spec.description,
            "partitioned": spec.partitions_def is not None,
        }
    jobs = {
        job.name: {"description": job.description,
                   "assets": sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys)}
        for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name) if not job.name.startswith("__")
    }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": {s.name: {"cron": s.cron_schedule, "job": s.job_name, "description": s.description}
                      for s in defs.schedules},
        "sensors": {s.name: {"jobs": sorted(j.name for j in s.jobs), "description": s.description}
                    for s in defs.sensors},
    }


def test_definitions_match_the_snapshot(monkeypatch):
    monkeypatch.setenv("BIOREVIEW_ENV", "local")
    from bioreview_assets.config.loader import load_snapshot
    from bioreview_assets.definitions import build_definitions

    # Built by the same function as the code location's `defs`, from the shipped configs loaded now (the module's
    # `defs` holds whatever configs were set when a test first imported it).
    defs = build_definitions(load_snapshot())
    current = json.loads(json.dumps(definitions_snapshot(defs)))
    if os.environ.get("BIOREVIEW_UPDATE_SNAPSHOT"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    stored = json.loads(SNAPSHOT.read_text())
    for section in ("assets", "checks", "jobs", "schedules", "sensors"):
        assert current[section] == stored[section], (
            f"the definitions' {section} differ from {SNAPSHOT.name}; if intended, regenerate with "
            "BIOREVIEW_UPDATE_SNAPSHOT=1 python -m pytest bioreview_assets_tests/test_definitions_snapshot.py")


def test_every_demo_step_runs_under_a_named_job_that_holds_its_assets():
    from bioreview_assets.cli.demo import demo_plan
    from bioreview_assets.config.loader import load_snapshot
    from bioreview_assets.definitions import build_definitions
    from bioreview_assets.orchestration.jobs import job_for

    snapshot = load_snapshot()
    defs = build_definitions(snapshot)
    for step in demo_plan(snapshot=snapshot):
        job = defs.resolve_job_def(job_for(step.assets))
        assert not job.name.startswith("__")
        assert {dg.AssetKey(name) for name in step.assets} <= job.asset_layer.selected_asset_keys, step.label
        if step.partition is not None:
            assert step.partition in job.partitions_def.get_partition_keys(), step.label


def test_every_partitioned_asset_takes_its_partition_lock():
    """Issue 34: two materialisations of one partition never both do the work: every partitioned asset's body runs
    under store/locks.py's partition lock (merged_model, matcher_validation and published_adapter once ran without)."""
    from bioreview_assets.config.loader import load_snapshot
    from bioreview_assets.definitions import build_definitions

    defs = build_definitions(load_snapshot())
    partitioned = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.partitions_def is not None]
    assert len(partitioned) >= 10
    unlocked = [a.key.to_user_string() for a in partitioned
                if not getattr(a.op.compute_fn.decorated_fn, "takes_partition_lock", False)]
    assert unlocked == []
