"""Partitions are read from the config when the asset modules are imported: rebuild them for another config."""


def reload_asset_modules() -> None:
    import importlib

    from bioreview_assets import definitions

    for module in definitions.ASSET_MODULES:
        importlib.reload(module)
