from bioreview_assets.definitions import build_assets
from bioreview_assets.cli.demo import asset_order, demo_plan


def test_the_demo_plan_follows_the_asset_graph():
    assets = build_assets()
    deps = {key.to_user_string(): {d.to_user_string() for d in a.asset_deps[key]} for a in assets for key in a.keys}
    plan = demo_plan(assets)
    order = [step.assets[0] for step in plan]
    assert set(order) == set(deps) == set(asset_order(assets))  # every asset of the graph, none invented
    for index, asset in enumerate(order):
        assert deps[asset] <= set(order[:index]), f"{asset} runs before one of {sorted(deps[asset])}"
    labels = [step.label for step in plan]
    assert len(labels) == len(set(labels))  # each partition once
    assert labels[:3] == ["benchmark_split[train]", "benchmark_split[val]", "benchmark_split[test]"]
    assert "leaderboard" in labels
