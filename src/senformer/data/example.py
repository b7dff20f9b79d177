"""``tf.train.Example`` with protobuf alone: the message classes are built at import from a descriptor.

The schema is TensorFlow's ``core/example/{example,feature}.proto`` (package ``tensorflow``); building it
here instead of shipping generated ``_pb2`` files keeps us free of protoc version pins. A private
descriptor pool avoids clashes with TensorFlow's own classes when both are imported.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..errors import UserError

_F = descriptor_pb2.FieldDescriptorProto


def _build_classes():
    proto = descriptor_pb2.FileDescriptorProto(name="senformer/tf_example.proto", package="tensorflow", syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]], packed: bool = False):
        descriptor = proto.message_type.add(name=name)
        for field_name, number, field_type, label, type_name in fields:
            field = descriptor.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name
            if packed:
                field.options.packed = True
        return descriptor

    repeated, optional = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, _F.TYPE_BYTES, repeated, None)])
    message("FloatList", [("value", 1, _F.TYPE_FLOAT, repeated, None)], packed=True)
    message("Int64List", [("value", 1, _F.TYPE_INT64, repeated, None)], packed=True)
    feature = message("Feature", [
        ("bytes_list", 1, _F.TYPE_MESSAGE, optional, ".tensorflow.BytesList"),
        ("float_list", 2, _F.TYPE_MESSAGE, optional, ".tensorflow.FloatList"),
        ("int64_list", 3, _F.TYPE_MESSAGE, optional, ".tensorflow.Int64List"),
    ])
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = message("Features", [("feature", 1, _F.TYPE_MESSAGE, repeated, ".tensorflow.Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=optional)
    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, label=optional, type_name=".tensorflow.Feature")
    entry.options.map_entry = True
    message("Example", [("features", 1, _F.TYPE_MESSAGE, optional, ".tensorflow.Features")])

    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.{name}"))
        for name in ("BytesList", "FloatList", "Int64List", "Feature", "Features", "Example")
    }


_CLASSES = _build_classes()
Example = _CLASSES["Example"]
Feature = _CLASSES["Feature"]

FeatureValue = bytes | list[bytes] | np.ndarray


def parse_example(payload: bytes) -> dict[str, FeatureValue]:
    """Decode a serialized ``tf.train.Example``.

    Returns ``{name: value}``: a ``bytes_list`` as a list of ``bytes``, a ``float_list`` as float32 and an
    ``int64_list`` as int64 numpy arrays ``(values,)``. Raises :class:`UserError` for bytes that are not an Example.
    """
    example = Example()
    try:
        example.ParseFromString(payload)
    except Exception as error:  # protobuf raises DecodeError (a bare Exception subclass) for garbage
        raise UserError(f"record is not a tf.train.Example ({error})") from None
    values: dict[str, FeatureValue] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            values[name] = list(feature.bytes_list.value)
        elif kind == "float_list":
            values[name] = np.asarray(feature.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            values[name] = np.asarray(feature.int64_list.value, dtype=np.int64)
        else:
            values[name] = []
    return values


def make_example(features: Mapping[str, bytes | list[bytes] | np.ndarray | list[int] | list[float]]) -> bytes:
    """Serialize ``{name: value}`` as a ``tf.train.Example``.

    ``bytes`` (or a list of bytes) become a ``bytes_list``; integer arrays/lists an ``int64_list``; floating
    arrays/lists a ``float_list``. Basenji2 stores ``sequence`` and ``target`` as one raw-bytes value each.
    """
    example = Example()
    for name, value in features.items():
        feature = example.features.feature[name]
        if isinstance(value, (bytes, bytearray, memoryview)):
            feature.bytes_list.value.append(bytes(value))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (bytes, bytearray)) for v in value):
            feature.bytes_list.value.extend(bytes(v) for v in value)
        else:
            array = np.asarray(value)
            if array.dtype.kind in "iub":
                feature.int64_list.value.extend(array.astype(np.int64).ravel().tolist())
            elif array.dtype.kind == "f":
                feature.float_list.value.extend(array.astype(np.float32).ravel().tolist())
            else:
                raise ValueError(f"feature {name!r}: cannot store values of dtype {array.dtype}")
    return example.SerializeToString()
