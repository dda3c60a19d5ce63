"""Just enough of the ONNX protobuf format to rewrite a model's weights and metadata without the ``onnx`` package.

Why: site adaptation (:mod:`hv_desktop.core.site.adapt`) writes a new model file on a clinic PC, where the runtime is
onnxruntime, numpy and Pillow only, and the standalone bundle has no room for ``onnx`` and ``protobuf``. What it
changes is small: a few initializers replaced, graph outputs and Identity nodes added, the metadata entry
replaced. Everything else is copied byte for byte, in order, so the result is the same graph.

Field numbers are ONNX's (onnx/onnx.proto3): ModelProto graph=7, metadata_props=14; GraphProto node=1,
initializer=5, output=12; TensorProto dims=1, data_type=2, float_data=4, name=8, raw_data=9; NodeProto
input=1, output=2, name=3, op_type=4; ValueInfoProto name=1, type=2; TypeProto tensor_type=1; elem_type=1;
StringStringEntryProto key=1, value=2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


class ProtoError(ValueError):
    """Bytes that are not the protobuf this module expects."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ProtoError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _enc_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@dataclass
class Field:
    number: int
    wire: int
    value: int | bytes  # varint / fixed as int, length-delimited as bytes


def parse(buf: bytes) -> list[Field]:
    """Top-level fields of one message, in file order."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ProtoError("length-delimited field runs past the end")
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        fields.append(Field(number, wire, value))
    return fields


def encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for f in fields:
        out += _enc_varint(f.number << 3 | f.wire)
        if f.wire == 0:
            out += _enc_varint(int(f.value))
        elif f.wire == 2:
            data = bytes(f.value)
            out += _enc_varint(len(data)) + data
        elif f.wire == 1:
            out += int(f.value).to_bytes(8, "little")
        else:
            out += int(f.value).to_bytes(4, "little")
    return bytes(out)


def _string(number: int, text: str) -> Field:
    return Field(number, 2, text.encode("utf-8"))


def _first(fields: list[Field], number: int) -> Field | None:
    return next((f for f in fields if f.number == number), None)


def tensor_name(raw: bytes) -> str:
    f = _first(parse(raw), 8)
    return bytes(f.value).decode("utf-8") if f else ""


def tensor_to_array(raw: bytes) -> np.ndarray:
    """An initializer's values (raw_data or float_data)."""
    fields = parse(raw)
    dims: list[int] = []
    for f in fields:
        if f.number == 1 and f.wire == 0:
            dims.append(int(f.value))
        elif f.number == 1 and f.wire == 2:
            data, pos = bytes(f.value), 0
            while pos < len(data):
                d, pos = _varint(data, pos)
                dims.append(d)
    dtype_f = _first(fields, 2)
    code = int(dtype_f.value) if dtype_f else 0
    if code not in _DTYPES:
        raise ProtoError(f"tensor data type {code} is not supported here")
    rawdata = _first(fields, 9)
    if rawdata is not None:
        arr = np.frombuffer(bytes(rawdata.value), dtype=np.dtype(_DTYPES[code]).newbyteorder("<"))
    elif code == 1:
        packed = b"".join(bytes(f.value) for f in fields if f.number == 4 and f.wire == 2)
        arr = np.frombuffer(packed, dtype="<f4")
    else:
        raise ProtoError("tensor without raw data")
    if arr.size != int(np.prod(dims)):
        raise ProtoError("tensor data does not fit its dimensions")
    return arr.reshape(dims).astype(_DTYPES[code])


def array_to_tensor(name: str, arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, order="C")  # (ascontiguousarray would turn a scalar into shape (1,))
    code = _CODES.get(arr.dtype)
    if code is None:
        raise ProtoError(f"dtype {arr.dtype} is not supported here")
    dims = b"".join(_enc_varint(int(d)) for d in arr.shape)
    fields = [Field(1, 2, dims)] if arr.ndim else []
    fields += [Field(2, 0, code), _string(8, name), Field(9, 2, arr.astype(arr.dtype.newbyteorder("<")).tobytes())]
    return encode(fields)


class OnnxFile:
    """A parsed model whose initializers, outputs and metadata can be read and replaced."""

    def __init__(self, data: bytes) -> None:
        self.model = parse(data)
        g = _first(self.model, 7)
        if g is None:
            raise ProtoError("not an ONNX model (no graph)")
        self.graph = parse(bytes(g.value))
        self._index = {tensor_name(bytes(f.value)): i for i, f in enumerate(self.graph) if f.number == 5}

    @property
    def initializer_names(self) -> list[str]:
        return list(self._index)

    @property
    def output_names(self) -> list[str]:
        names = []
        for f in self.graph:
            if f.number == 12:
                n = _first(parse(bytes(f.value)), 1)
                names.append(bytes(n.value).decode("utf-8") if n else "")
        return names

    def nodes(self) -> list[tuple[str, list[str], list[str]]]:
        """(op_type, inputs, outputs) of every node, in graph order."""
        out = []
        for f in self.graph:
            if f.number == 1:
                fs = parse(bytes(f.value))
                text = [(x.number, bytes(x.value).decode("utf-8", "replace")) for x in fs if x.wire == 2]
                out.append(
                    (next((t for n, t in text if n == 4), ""), [t for n, t in text if n == 1], [t for n, t in text if n == 2])
                )
        return out

    def initializer(self, name: str) -> np.ndarray:
        if name not in self._index:
            raise KeyError(name)
        return tensor_to_array(bytes(self.graph[self._index[name]].value))

    def set_initializer(self, name: str, arr: np.ndarray) -> None:
        if name not in self._index:
            raise KeyError(name)
        self.graph[self._index[name]] = Field(5, 2, array_to_tensor(name, arr))

    def add_output(self, tensor: str, name: str | None = None) -> None:
        """Expose ``tensor`` as a float graph output (through an Identity node when renamed)."""
        out = name or tensor
        if name and name != tensor:
            node = encode([_string(1, tensor), _string(2, out), _string(3, f"output/{out}"), _string(4, "Identity")])
            last_node = max((i for i, f in enumerate(self.graph) if f.number == 1), default=-1)
            self.graph.insert(last_node + 1, Field(1, 2, node))
            self._index = {k: (i + 1 if i > last_node else i) for k, i in self._index.items()}
        tensor_type = encode([Field(1, 0, 1)])  # elem_type FLOAT, shape left open
        value_info = encode([_string(1, out), Field(2, 2, encode([Field(1, 2, tensor_type)]))])
        self.graph.append(Field(12, 2, value_info))

    def metadata(self) -> dict[str, str]:
        out = {}
        for f in self.model:
            if f.number == 14:
                kv = parse(bytes(f.value))
                k, v = _first(kv, 1), _first(kv, 2)
                out[bytes(k.value).decode("utf-8") if k else ""] = bytes(v.value).decode("utf-8") if v else ""
        return out

    def set_metadata(self, key: str, value: str) -> None:
        entry = Field(14, 2, encode([_string(1, key), _string(2, value)]))
        for i, f in enumerate(self.model):
            if f.number == 14 and tensor_key(bytes(f.value)) == key:
                self.model[i] = entry
                return
        self.model.append(entry)

    def to_bytes(self) -> bytes:
        fields = [Field(7, 2, encode(self.graph)) if f.number == 7 else f for f in self.model]
        return encode(fields)


def tensor_key(raw: bytes) -> str:
    k = _first(parse(raw), 1)
    return bytes(k.value).decode("utf-8") if k else ""
