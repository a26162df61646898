#!/usr/bin/python3
"""Writes the hostile-input corpus under tests/corpus/ and its expectations.txt.

    /usr/bin/python3 tests/corpus/generate_corpus.py      (needs python3-onnx and protoc)

Outputs (all deterministic; commit them):
  onnx/*.onnx      models for ptc::onnx_import (bytes and file import)
  onnx/data/       external data files referenced by some models (inside the model folder)
  escape_target.bin  a file OUTSIDE onnx/ that escaping external-data paths point at
  plan/*.bin       (plan, weights) pairs joined as tests/fuzz/fuzz_targets.h JoinPlanInput:
                   u32 little-endian plan length | plan bytes | weights bytes
  ir/*.ir          IR text for the parser
  expectations.txt one line per input: NAME bytes=ok|error|any [file=ok|error|any]
                   ("file" only for ONNX: import from the path, external data allowed)

The corpus is replayed by ptc_corpus_tests (tests/fuzz/corpus_test.cc) and seeds the libFuzzer
targets (tests/fuzz/README.md). "any" means only "no crash": used where the outcome legitimately
depends on importer policy (bit flips, absurd but legal models).
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

import onnx
from onnx import TensorProto, helper, numpy_helper
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MAX_TOTAL_BYTES = 2 * 1024 * 1024

expectations = []  # (name, {"bytes": ..., "file": ...})


def write(rel, data, **expect):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if expect:
        expectations.append((rel, expect))


# ------------------------------------------------------------------------------------------
# ONNX


def base_graph(initializers=None, x_shape=(2, 3), nodes=None, inputs=None, outputs=None,
               y_shape=None):
    if initializers is None:
        initializers = [
            numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 8, "W"),
            numpy_helper.from_array(np.array([0.5, -1, 2, 0], dtype=np.float32), "B"),
        ]
    nodes = nodes or [
        helper.make_node("MatMul", ["X", "W"], ["XW"], name="/MatMul"),
        helper.make_node("Add", ["XW", "B"], ["Y"], name="/Add"),
    ]
    inputs = inputs or [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_shape))]
    if y_shape is None:
        y_shape = [x_shape[0], 4]
    outputs = outputs or [helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(y_shape))]
    return helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)


def model_bytes(graph, opset=17, ir_version=8):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m.SerializeToString()


def tensor(name, dims, data_type=TensorProto.FLOAT, raw=None, floats=None):
    t = TensorProto()
    t.name = name
    t.data_type = data_type
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    if floats is not None:
        t.float_data.extend(floats)
    return t


def external(name, dims, location, offset=None, length=None):
    t = tensor(name, dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key = k
            e.value = str(v)
    return t


def b_init():
    return numpy_helper.from_array(np.array([0.5, -1, 2, 0], dtype=np.float32), "B")


def python_parses(data):
    m = onnx.ModelProto()
    try:
        m.ParseFromString(data)
        return True
    except Exception:
        return False


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field, payload):  # length-delimited protobuf field
    return varint((field << 3) | 2) + varint(len(payload)) + payload


def gen_onnx():
    W_BYTES = (np.arange(12, dtype=np.float32) / 8).tobytes()
    base = model_bytes(base_graph())
    write("onnx/valid_mlp.onnx", base, bytes="ok", file="ok")
    # Symbolic batch dim: bound by the --dim values the fuzz entry passes (batch=2).
    write("onnx/valid_symbolic_batch.onnx", model_bytes(base_graph(x_shape=("batch", 3))),
          bytes="ok", file="ok")

    # Truncations: an error whenever protobuf itself cannot parse the rest.
    for frac in (0.1, 0.5, 0.9):
        cut = base[: int(len(base) * frac)]
        e = "error" if not python_parses(cut) else "any"
        write(f"onnx/truncated_{int(frac * 100)}.onnx", cut, bytes=e, file=e)
    cut = base[:-1]
    e = "error" if not python_parses(cut) else "any"
    write("onnx/truncated_last_byte.onnx", cut, bytes=e, file=e)

    # Bit flips: anything may happen except a crash.
    rng = random.Random(1234)
    for i in range(16):
        data = bytearray(base)
        for _ in range(1 + i % 6):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
        write(f"onnx/bitflip_{i:02d}.onnx", bytes(data), bytes="any", file="any")

    # Not a model at all.
    write("onnx/empty.onnx", b"", bytes="error", file="error")
    write("onnx/text.onnx", b"ir_version: 8\ngraph { name: 'g' }\n", bytes="error", file="error")
    write("onnx/ptc_plan_magic.onnx", b"PTCPLAN\0\x01\0\0\0\0\0\0\0", bytes="error", file="error")

    # Huge declared shapes with a few bytes of data.
    for name, dims in (("huge_dims_2p40", [1 << 40, 1 << 40]), ("huge_dims_1d", [1 << 40]),
                       ("huge_dims_overflow", [1 << 62, 1 << 62, 4])):
        inits = [tensor("W", dims, raw=W_BYTES), b_init()]
        write(f"onnx/{name}.onnx", model_bytes(base_graph(initializers=inits)), bytes="error",
              file="error")
    inits = [tensor("W", [1 << 40, 4], floats=[1.0, 2.0]), b_init()]
    write("onnx/huge_dims_float_data.onnx", model_bytes(base_graph(initializers=inits)),
          bytes="error", file="error")
    # A graph input whose byte size overflows int64.
    write("onnx/huge_input_dims.onnx",
          model_bytes(base_graph(x_shape=(1 << 62, 1 << 62))), bytes="error", file="error")

    # raw_data / shape mismatch, float_data count mismatch, missing data.
    inits = [tensor("W", [3, 4], raw=W_BYTES[:44]), b_init()]
    write("onnx/raw_data_short.onnx", model_bytes(base_graph(initializers=inits)), bytes="error",
          file="error")
    inits = [tensor("W", [3, 4], raw=W_BYTES + b"\0\0\0\0"), b_init()]
    write("onnx/raw_data_long.onnx", model_bytes(base_graph(initializers=inits)), bytes="error",
          file="error")
    inits = [tensor("W", [3, 4], floats=[1.0] * 5), b_init()]
    write("onnx/float_data_short.onnx", model_bytes(base_graph(initializers=inits)),
          bytes="error", file="error")
    inits = [tensor("W", [3, 4]), b_init()]
    write("onnx/initializer_without_data.onnx", model_bytes(base_graph(initializers=inits)),
          bytes="error", file="error")

    # Negative dims.
    inits = [tensor("W", [-3, 4], raw=W_BYTES), b_init()]
    write("onnx/negative_initializer_dim.onnx", model_bytes(base_graph(initializers=inits)),
          bytes="error", file="error")
    g = base_graph()
    g.input[0].type.tensor_type.shape.dim[0].dim_value = -5
    write("onnx/negative_input_dim.onnx", model_bytes(g), bytes="error", file="error")

    # External data. Byte imports forbid external data; file imports must keep it inside the
    # model's folder: `..`, absolute paths and symlinks out are refused even though the files
    # exist and are large enough (a lax importer would read them).
    write("escape_target.bin", W_BYTES * 4)
    write("onnx/data/w.bin", W_BYTES)
    link = os.path.join(HERE, "onnx/data/link_out.bin")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink("../../escape_target.bin", link)

    def ext_model(location, **kw):
        inits = [external("W", [3, 4], location, **kw), b_init()]
        return model_bytes(base_graph(initializers=inits))

    write("onnx/external_ok.onnx", ext_model("data/w.bin"), bytes="error", file="ok")
    write("onnx/external_dotdot_escape.onnx", ext_model("../escape_target.bin"), bytes="error",
          file="error")
    write("onnx/external_dotdot_inner.onnx", ext_model("data/../../escape_target.bin"),
          bytes="error", file="error")
    write("onnx/external_absolute.onnx", ext_model("/dev/zero", length=48), bytes="error",
          file="error")
    write("onnx/external_absolute_etc.onnx", ext_model("/etc/passwd", length=48), bytes="error",
          file="error")
    write("onnx/external_symlink_out.onnx", ext_model("data/link_out.bin"), bytes="error",
          file="error")
    write("onnx/external_missing.onnx", ext_model("data/missing.bin"), bytes="error",
          file="error")
    write("onnx/external_offset_past_end.onnx", ext_model("data/w.bin", offset=4096, length=48),
          bytes="error", file="error")
    write("onnx/external_length_mismatch.onnx", ext_model("data/w.bin", offset=0, length=20),
          bytes="error", file="error")
    write("onnx/external_negative_offset.onnx", ext_model("data/w.bin", offset=-16),
          bytes="error", file="error")
    write("onnx/external_huge_length.onnx",
          ext_model("data/w.bin", offset=0, length=1 << 62), bytes="error", file="error")
    write("onnx/external_folder.onnx", ext_model("data"), bytes="error", file="error")

    # Graph structure problems.
    nodes = [helper.make_node("FooBarNotAnOp", ["X"], ["Y"], name="/Foo")]
    write("onnx/unknown_op.onnx", model_bytes(base_graph(nodes=nodes, initializers=[])),
          bytes="error", file="error")
    nodes = [helper.make_node("Add", ["X", "NOPE"], ["Y"], name="/Add")]
    write("onnx/undefined_input.onnx", model_bytes(base_graph(nodes=nodes, initializers=[])),
          bytes="error", file="error")
    nodes = [helper.make_node("Add", ["X", "B2"], ["A2"], name="/A"),
             helper.make_node("Relu", ["A2"], ["B2"], name="/B"),
             helper.make_node("Identity", ["A2"], ["Y"], name="/C")]
    write("onnx/cycle.onnx", model_bytes(base_graph(nodes=nodes, initializers=[])),
          bytes="error", file="error")
    write("onnx/opset_999.onnx", model_bytes(base_graph(), opset=999), bytes="error",
          file="error")
    write("onnx/ir_version_0.onnx", model_bytes(base_graph(), ir_version=0), bytes="error",
          file="error")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Y"], name="/MatMul")]
    inits = [numpy_helper.from_array(np.ones((5, 4), np.float32), "W")]
    write("onnx/matmul_shape_mismatch.onnx",
          model_bytes(base_graph(nodes=nodes, initializers=inits)), bytes="error", file="error")

    # Constant folding into huge tensors: the importer must refuse, not allocate terabytes.
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "S")
    nodes = [helper.make_node("ConstantOfShape", ["S"], ["C"], name="/COS",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("Identity", ["X"], ["Y"], name="/Id")]
    outs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("C", TensorProto.FLOAT, [1 << 20, 1 << 20])]
    write("onnx/constant_of_shape_huge.onnx",
          model_bytes(base_graph(nodes=nodes, initializers=[shape], outputs=outs)),
          bytes="any", file="any")
    rng_inits = [numpy_helper.from_array(np.array(v, np.int64), n)
                 for n, v in (("start", 0), ("limit", 1 << 40), ("delta", 1))]
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["R"], name="/Range"),
             helper.make_node("Identity", ["X"], ["Y"], name="/Id")]
    outs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("R", TensorProto.INT64, [1 << 40])]
    write("onnx/range_huge.onnx",
          model_bytes(base_graph(nodes=nodes, initializers=rng_inits, outputs=outs)),
          bytes="any", file="any")
    shape = numpy_helper.from_array(np.array([1 << 40, 3], np.int64), "S")
    nodes = [helper.make_node("Reshape", ["X", "S"], ["Y"], name="/Reshape")]
    write("onnx/reshape_huge.onnx",
          model_bytes(base_graph(nodes=nodes, initializers=[shape], y_shape=(1 << 40, 3))),
          bytes="error", file="error")
    shape = numpy_helper.from_array(np.array([1 << 30, 1 << 30, 3], np.int64), "S")
    nodes = [helper.make_node("Expand", ["X", "S"], ["Y"], name="/Expand")]
    g = base_graph(nodes=nodes, initializers=[shape], x_shape=(1, 3),
                   y_shape=(1 << 30, 1 << 30, 3))
    write("onnx/expand_huge.onnx", model_bytes(g), bytes="any", file="any")

    # Deep recursion: Model.graph -> Graph.node -> Node.attribute -> Attribute.g -> ...
    # nested 3000 times (protobuf's default recursion limit is 100).
    payload = b""
    for _ in range(3000):
        attr = ld(1, b"then_branch") + varint((20 << 3) | 0) + varint(5) + ld(6, payload)
        node = ld(4, b"If") + ld(5, attr)
        payload = ld(1, node)
    deep = varint((1 << 3) | 0) + varint(8) + ld(7, payload)
    write("onnx/deep_recursion.onnx", deep, bytes="error", file="error")
    # Legal nesting depth (30 If levels) that ptc does not support (no If op).
    inner = base_graph()
    for i in range(30):
        then_g = helper.make_graph([helper.make_node("Identity", ["X"], [f"T{i}"])], f"t{i}", [],
                                   [helper.make_tensor_value_info(f"T{i}", TensorProto.FLOAT,
                                                                  [2, 3])])
        cond = numpy_helper.from_array(np.array(True), f"cond{i}")
        node = helper.make_node("If", [f"cond{i}"], ["Y"], then_branch=then_g, else_branch=then_g,
                                name=f"/If{i}")
        inner = helper.make_graph([node], f"g{i}", list(inner.input),
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3])],
                                  initializer=[cond])
    write("onnx/nested_if.onnx", model_bytes(inner), bytes="any", file="any")
    # A length prefix far beyond the data.
    write("onnx/length_2gb.onnx", varint((7 << 3) | 2) + varint((1 << 31) - 1) + b"\x0a\x01g",
          bytes="error", file="error")
    # Huge counts: 4000-node chain, a rank-3000 tensor, 20000 opset imports.
    nodes = [helper.make_node("Relu", ["X" if i == 0 else f"r{i - 1}"],
                              ["Y" if i == 3999 else f"r{i}"]) for i in range(4000)]
    write("onnx/many_nodes.onnx",
          model_bytes(base_graph(nodes=nodes, initializers=[], y_shape=(2, 3))),
          bytes="any", file="any")
    inits = [tensor("W", [1] * 3000, floats=[1.0]), b_init()]
    write("onnx/rank_3000.onnx", model_bytes(base_graph(initializers=inits)), bytes="error",
          file="error")
    m = onnx.ModelProto()
    m.ParseFromString(base)
    for i in range(20000):
        op = m.opset_import.add()
        op.domain = f"d{i}"
        op.version = 1
    write("onnx/many_opsets.onnx", m.SerializeToString(), bytes="any", file="any")


# ------------------------------------------------------------------------------------------
# Plans

P1, P2, P3, P4, P5 = (11400714785074694791, 14029467366897019727, 1609587929392839161,
                      9650029242287828579, 2870177450012600261)
M64 = (1 << 64) - 1


def xxh64(data, seed=0):
    """Reference XXH64 (independent of runtime/plan/checksum.cc)."""
    def rotl(x, r):
        return ((x << r) | (x >> (64 - r))) & M64

    def rnd(acc, lane):
        acc = (acc + lane * P2) & M64
        return (rotl(acc, 31) * P1) & M64

    n = len(data)
    p = 0
    if n >= 32:
        v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64]
        while p + 32 <= n:
            for i in range(4):
                v[i] = rnd(v[i], struct.unpack_from("<Q", data, p + 8 * i)[0])
            p += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M64
        for i in range(4):
            h ^= rnd(0, v[i])
            h = (h * P1 + P4) & M64
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while p + 8 <= n:
        h ^= rnd(0, struct.unpack_from("<Q", data, p)[0])
        h = (rotl(h, 27) * P1 + P4) & M64
        p += 8
    if p + 4 <= n:
        h ^= (struct.unpack_from("<I", data, p)[0] * P1) & M64
        h = (rotl(h, 23) * P2 + P3) & M64
        p += 4
    while p < n:
        h ^= (data[p] * P5) & M64
        h = (rotl(h, 11) * P1) & M64
        p += 1
    h ^= h >> 33
    h = (h * P2) & M64
    h ^= h >> 29
    h = (h * P3) & M64
    h ^= h >> 32
    return h


assert xxh64(b"") == 0xEF46DB3751D8E999
assert xxh64(b"Nobody inspects the spammish repetition") == 0xFBCEA83C8A378BF1


def load_plan_pb2():
    out = tempfile.mkdtemp()
    subprocess.run(["protoc", f"--python_out={out}", "-I", os.path.join(ROOT, "runtime/plan"),
                    os.path.join(ROOT, "runtime/plan/plan.proto")], check=True)
    sys.path.insert(0, out)
    import plan_pb2  # noqa: E402
    return plan_pb2


VALID_IR = """module {model="corpus"}

func @main(%x: f32[2,3], %w: f32[3,4] {param}, %b: f32[4] {param}) -> (f32[2,4]) {
  %xw = matmul(%x, %w) : f32[2,4]  loc("/MatMul")
  %y = add(%xw, %b) : f32[2,4]  loc("/Add")
  return %y
}
"""


def join(plan, weights):
    return struct.pack("<I", len(plan)) + plan + weights


def gen_plans():
    pb = load_plan_pb2()
    w = (np.arange(12, dtype=np.float32) / 8).tobytes()
    b = np.array([0.5, -1, 2, 0], np.float32).tobytes()

    def weights_file(blobs, size=None, magic=b"PTCWGT\0\1", version=1):
        body = bytearray(64)
        offsets = []
        for blob in blobs:
            offsets.append(len(body))
            body += blob
            body += b"\0" * (-len(body) % 64)
        total = len(body) if size is None else size
        body[0:8] = magic
        body[8:12] = struct.pack("<I", version)
        body[16:24] = struct.pack("<Q", total)
        return bytes(body), offsets

    weights, offs = weights_file([b, w])

    def proto(weights_bytes=weights):
        p = pb.PlanProto()
        p.format_version = 1
        p.producer = "ptc 0.1.0"
        p.target = "cpu"
        p.options["opt-level"] = "2"
        p.ir_text = VALID_IR
        p.metadata["model"] = "corpus"
        p.memory.arena_bytes = 128
        p.memory.lower_bound = 64
        for name, off, nb, first, last in (("xw", 0, 32, 0, 1), ("y", 64, 32, 1, 2)):
            buf = p.memory.buffers.add()
            buf.value, buf.offset, buf.bytes, buf.first, buf.last = name, off, nb, first, last
        p.weights.file_bytes = len(weights_bytes)
        p.weights.checksum_algorithm = "xxh64"
        p.weights.checksum = xxh64(weights_bytes)
        for name, shape, off, nb in (("b", [4], offs[0], 16), ("w", [3, 4], offs[1], 48)):
            e = p.weights.entries.add()
            e.name, e.dtype, e.offset, e.nbytes = name, "f32", off, nb
            e.shape.extend(shape)
        return p

    def encode(p, version=1, magic=b"PTCPLAN\0"):
        return magic + struct.pack("<II", version, 0) + p.SerializeToString()

    def emit(name, p, wbytes=weights, expect="error", **kw):
        write(f"plan/{name}.bin", join(encode(p, **kw) if not isinstance(p, bytes) else p, wbytes),
              bytes=expect)

    good = encode(proto())
    emit("valid", proto(), expect="ok")
    emit("empty", b"", b"")
    write("plan/too_short.bin", b"\x02\0", bytes="error")
    write("plan/length_prefix_past_end.bin", struct.pack("<I", 0xFFFFFFFF) + good[:40],
          bytes="error")
    emit("wrong_magic", proto(), magic=b"PTCPLAX\0")
    emit("onnx_as_plan", b"\x08\x08\x12\x07pytorch:\x00")
    emit("version_2", proto(), version=2)
    emit("version_max", proto(), version=0xFFFFFFFF)
    emit("version_0", proto(), version=0)
    p = proto()
    p.format_version = 2
    emit("body_version_mismatch", p)
    for frac in (0.3, 0.6, 0.95):
        emit(f"truncated_{int(frac * 100)}", good[: int(len(good) * frac)])
    emit("garbage_body", good[:16] + b"\xff" * 200)
    bad = bytearray(weights)
    bad[64 + 3] ^= 0x10
    emit("checksum_mismatch", proto(), bytes(bad))
    p = proto()
    p.weights.checksum_algorithm = "crc32"
    emit("unknown_checksum_algorithm", p)
    emit("weights_truncated", proto(), weights[:100])
    wbad, _ = weights_file([b, w], magic=b"NOTWGT\0\1")
    emit("weights_wrong_magic", proto(wbad), wbad)
    wbad, _ = weights_file([b, w], version=9)
    emit("weights_version_9", proto(wbad), wbad)
    wbad, _ = weights_file([b, w], size=1 << 40)
    emit("weights_header_size_lies", proto(wbad), wbad)
    emit("weights_of_another_plan", proto(weights + b"\0" * 64), weights)

    def with_entry(fn):
        p = proto()
        fn({e.name: e for e in p.weights.entries}, p)
        return p

    emit("index_out_of_bounds", with_entry(lambda e, p: setattr(e["w"], "offset", 1 << 20)))
    emit("index_offset_overflow",
         with_entry(lambda e, p: setattr(e["w"], "offset", ((1 << 63) - 1) // 64 * 64)))
    emit("index_negative_offset", with_entry(lambda e, p: setattr(e["w"], "offset", -64)))
    emit("index_in_header", with_entry(lambda e, p: setattr(e["w"], "offset", 0)))
    emit("index_misaligned", with_entry(lambda e, p: setattr(e["w"], "offset", offs[1] + 4)))
    emit("index_overlap", with_entry(lambda e, p: setattr(e["w"], "offset", offs[0])))
    emit("index_nbytes_mismatch", with_entry(lambda e, p: setattr(e["w"], "nbytes", 44)))
    emit("index_negative_nbytes", with_entry(lambda e, p: setattr(e["w"], "nbytes", -48)))

    def huge(e, p):
        del e["w"].shape[:]
        e["w"].shape.extend([1 << 40, 1 << 40])
    emit("index_huge_shape", with_entry(huge))

    def neg(e, p):
        e["w"].shape[0] = -3
    emit("index_negative_dim", with_entry(neg))
    emit("index_bad_dtype", with_entry(lambda e, p: setattr(e["w"], "dtype", "f128")))
    emit("index_duplicate", with_entry(lambda e, p: p.weights.entries.add().CopyFrom(e["b"])))

    def deep_rank(e, p):
        e["b"].shape.extend([1] * 10000)
    emit("index_rank_10000", with_entry(deep_rank))

    def drop_b(e, p):
        del p.weights.entries[0]
    emit("missing_param_weights", with_entry(drop_b))

    def bad_ir(text):
        p = proto()
        p.ir_text = text
        return p
    emit("ir_garbage", bad_ir("this is not IR"))
    emit("ir_truncated", bad_ir(VALID_IR[: len(VALID_IR) // 2]))
    emit("ir_huge_dims", bad_ir(VALID_IR.replace("f32[2,3]", "f32[1099511627776,1099511627776]")))
    emit("ir_type_mismatch", bad_ir(VALID_IR.replace("%y = add(%xw, %b) : f32[2,4]",
                                                     "%y = add(%xw, %b) : f32[2,5]")))
    emit("ir_empty", bad_ir(""))

    def mem(fn):
        p = proto()
        fn(p.memory)
        return p
    emit("memory_out_of_arena", mem(lambda m: setattr(m.buffers[1], "offset", 128)))
    emit("memory_overflow",
         mem(lambda m: setattr(m.buffers[1], "offset", (1 << 63) - 64)))
    emit("memory_negative", mem(lambda m: setattr(m.buffers[0], "bytes", -1)))
    emit("memory_misaligned", mem(lambda m: setattr(m.buffers[1], "offset", 8)))
    emit("memory_bad_alias", mem(lambda m: setattr(m.buffers[1], "alias_of", "nope")))
    emit("memory_negative_arena", mem(lambda m: setattr(m, "arena_bytes", -128)))

    rng = random.Random(99)
    whole = join(good, weights)
    for i in range(12):
        data = bytearray(whole)
        for _ in range(1 + i % 4):
            pos = rng.randrange(4, len(data))
            data[pos] ^= 1 << rng.randrange(8)
        write(f"plan/bitflip_{i:02d}.bin", bytes(data), bytes="any")


# ------------------------------------------------------------------------------------------
# IR text


def gen_ir():
    write("ir/valid.ir", VALID_IR.encode(), bytes="ok")
    write("ir/empty.ir", b"", bytes="any")
    write("ir/deep_brackets.ir",
          b"func @main(%x: f32" + b"[" * 100000 + b") -> () {\n  return\n}\n", bytes="error")
    write("ir/deep_list_attr.ir",
          VALID_IR.replace("add(%xw, %b)", "add(%xw, %b) {a=" + "[" * 50000 + "}").encode(),
          bytes="error")
    write("ir/unterminated_string.ir",
          VALID_IR.replace('loc("/Add")', 'loc("/Add').encode(), bytes="error")
    write("ir/dim_overflow.ir",
          VALID_IR.replace("f32[2,3]", "f32[99999999999999999999,3]").encode(), bytes="error")
    write("ir/huge_dims.ir",
          VALID_IR.replace("f32[2,3]", "f32[4611686018427387904,4]").encode(), bytes="error")
    write("ir/negative_dim.ir", VALID_IR.replace("f32[2,3]", "f32[-2,3]").encode(),
          bytes="error")
    write("ir/dense_huge.ir",
          b"func @main() -> (f32[1099511627776]) {\n"
          b"  %c = constant() {value=dense<f32[1099511627776]: 1.0>} : f32[1099511627776]\n"
          b"  return %c\n}\n", bytes="error")
    write("ir/dense_count_mismatch.ir",
          b"func @main() -> (f32[3]) {\n"
          b"  %c = constant() {value=dense<f32[3]: 1.0, 2.0>} : f32[3]\n"
          b"  return %c\n}\n", bytes="error")
    write("ir/undefined_value.ir",
          VALID_IR.replace("add(%xw, %b)", "add(%nope, %b)").encode(), bytes="error")
    write("ir/redefined_value.ir",
          VALID_IR.replace("%y = add", "%xw = add").replace("return %y", "return %xw").encode(),
          bytes="error")
    write("ir/unknown_op.ir", VALID_IR.replace("matmul(", "frobnicate(").encode(),
          bytes="error")
    write("ir/type_mismatch.ir",
          VALID_IR.replace("%y = add(%xw, %b) : f32[2,4]", "%y = add(%xw, %b) : f32[2,5]")
          .encode(), bytes="error")
    write("ir/nul_bytes.ir", VALID_IR.encode().replace(b"matmul", b"mat\0mul"), bytes="error")
    write("ir/long_name.ir", VALID_IR.replace("%xw", "%" + "x" * 20000).encode(), bytes="any")
    write("ir/bad_dtype.ir", VALID_IR.replace("f32[2,3]", "f31[2,3]").encode(), bytes="error")
    write("ir/bad_escape.ir", VALID_IR.replace('loc("/Add")', 'loc("\\q\\x")').encode(),
          bytes="error")
    rng = random.Random(7)
    for i in range(8):
        data = bytearray(VALID_IR.encode())
        for _ in range(1 + i % 3):
            data[rng.randrange(len(data))] = rng.randrange(256)
        write(f"ir/mutated_{i:02d}.ir", bytes(data), bytes="any")


def main():
    for sub in ("onnx", "plan", "ir"):
        shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
    gen_onnx()
    gen_plans()
    gen_ir()
    with open(os.path.join(HERE, "expectations.txt"), "w") as f:
        f.write("# Written by generate_corpus.py; see its docstring. NAME bytes=... [file=...]\n")
        for name, exp in sorted(expectations):
            f.write(name + " " + " ".join(f"{k}={v}" for k, v in sorted(exp.items())) + "\n")
    total = 0
    for dirpath, _, files in os.walk(HERE):
        for fn in files:
            path = os.path.join(dirpath, fn)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    print(f"{len(expectations)} inputs, {total} bytes")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"corpus is {total} bytes, over the {MAX_TOTAL_BYTES}-byte budget")


if __name__ == "__main__":
    main()
