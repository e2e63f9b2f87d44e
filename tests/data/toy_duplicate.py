"""A broken dataset plugin for tests/data/test_data_registry.py: it registers a name the harness already has."""

from harness.data.registry import Dataset
from harness.data.voc import VOCLayout
from harness.hookspecs import hookimpl


@hookimpl
def harness_register_datasets(registry) -> None:
    registry.add(Dataset(name="voc", layout=VOCLayout, class_names=("a", "b")))
