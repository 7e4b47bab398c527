import json

import dagster as dg
import pytest

from bioreview_assets.orchestration.automation import SENSORS, benchmark_split_sensor
from bioreview_assets.core.benchmark import content_hash
from bioreview_assets.definitions import build_assets, build_resources
from bioreview_assets.sample.generator import write_sample


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A writable copy of the sample benchmark as BIOREVIEW_DATA_DIR."""
    write_sample(tmp_path / "data")
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _tick(instance, cursor=None):
    result = benchmark_split_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    return {r.partition_key: r for r in result.run_requests}, result.cursor


def test_sensor_requests_new_then_nothing_then_only_the_changed_split(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    requests, cursor = _tick(instance)
    assert sorted(requests) == ["test", "train", "val"]
    assert all(r.asset_selection == [dg.AssetKey("benchmark_split")] for r in requests.values())
    assert json.loads(cursor)["val"] == content_hash((data_dir / "val.jsonl").read_bytes())

    requests, cursor = _tick(instance, cursor)
    assert requests == {}

    val = data_dir / "val.jsonl"
    val.write_bytes(b"\n".join(val.read_bytes().splitlines()[:-1]) + b"\n")  # drop one article
    requests, cursor = _tick(instance, cursor)
    assert list(requests) == ["val"]
    assert requests["val"].tags["bioreview/content_hash"] == content_hash(val.read_bytes())
    assert _tick(instance, cursor)[0] == {}


def test_sensor_without_cursor_trusts_the_materialised_data_version(data_dir, storage_root):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(build_assets(), selection=["benchmark_split"], partition_key="val", instance=instance,
                            resources=build_resources())
    assert result.success
    requests, _ = _tick(instance)  # e.g. after a redeploy the cursor is gone, the instance's history is not
    assert sorted(requests) == ["test", "train"]


def test_sensor_is_exported_and_stopped_locally(monkeypatch):
    monkeypatch.delenv("BIOREVIEW_ENV", raising=False)
    assert benchmark_split_sensor in SENSORS
    assert benchmark_split_sensor.default_status == dg.DefaultSensorStatus.STOPPED
