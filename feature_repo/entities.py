"""Entities: the keys features are served by."""

from feast import Entity, ValueType

from ctpipe.datasets import get_dataset

dataset = get_dataset()

lab = Entity(
    name="lab",
    join_keys=[dataset.entity],
    value_type=ValueType.STRING,
    description="A laboratory that submits samples",
)
