"""A plugin that registers an encoder name the harness already has (tests/models/test_encoders.py)."""

from harness.hookspecs import hookimpl
from harness.models.encoders import Encoder
from tests.models.toy_encoder import build_toy


@hookimpl
def harness_register_encoders(registry):
    registry.add(Encoder("resnet50", build_toy, "a second resnet50"))
