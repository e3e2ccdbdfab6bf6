"""Static check of dav2's TensorRT code against the bindings of every supported TensorRT.

TensorRT cannot run here, so this is the check that can: every attribute dav2 reads from a
TensorRT object (the module, builder, network, parser, config, profile, runtime, engine,
execution context) must be a name that the Python bindings of TensorRT 10.3 (JetPack 6.1/6.2),
10.13 and 11.4 define (tests/data/tensorrt_api, made by scripts/tensorrt_api_names.py from the
bindings wheels' string tables), and none may be one of the names TensorRT 11 removed.
"""

import ast
import gzip
from pathlib import Path

import pytest

from conftest import DATA, ROOT, require_data

TENSORRT_CODE = [ROOT / "dav2" / "export" / "tensorrt.py", ROOT / "dav2" / "runtime" / "backends" / "tensorrt.py"]
SUPPORTED = ["10.3.0", "10.13.0.35", "11.4.0.106"]
# variables that hold TensorRT objects in the modules above
TENSORRT_ROOTS = {
    "trt",
    "builder",
    "network",
    "parser",
    "config",
    "trt_profile",
    "runtime",
    "self.engine",
    "self.context",
    "engine",  # backends.tensorrt.engine_facts(engine)
    "cache",  # config.get_timing_cache()
}
# the weakly typed API that TensorRT 11 removed (migration guide): dav2 must not use it anywhere
REMOVED_IN_11 = {
    "OBEY_PRECISION_CONSTRAINTS",
    "PREFER_PRECISION_CONSTRAINTS",
    "int8_calibrator",
    "IInt8EntropyCalibrator2",
    "IInt8MinMaxCalibrator",
    "EXPLICIT_BATCH",
    "set_output_type",
    "set_calibration_profile",
}


def names_of(version: str) -> set[str]:
    path = require_data(DATA / "tensorrt_api" / f"{version}.txt.gz", "TensorRT binding names")
    return set(gzip.decompress(path.read_bytes()).decode().split())


def root_of(node: ast.AST) -> str | None:
    """'self.engine' for self.engine.create_execution_context, 'config' for config.x().y, ..."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return f"self.{node.attr}"
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def tensorrt_attributes(path: Path) -> set[str]:
    """Names read from TensorRT objects in `path` (attributes of attributes included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute) or node.attr.startswith("__"):
            continue
        is_root = isinstance(node.value, ast.Name) and node.value.id == "self"
        if not is_root and root_of(node.value) in TENSORRT_ROOTS:
            found.add(node.attr)
    return found


def all_attribute_names(path: Path) -> set[str]:
    return {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}


def test_the_collector_sees_the_calls_that_matter():
    used = set().union(*(tensorrt_attributes(p) for p in TENSORRT_CODE))
    expected = {
        "NetworkDefinitionCreationFlag",
        "STRONGLY_TYPED",
        "create_network",
        "parse_from_file",
        "set_memory_pool_limit",
        "build_serialized_network",
        "create_timing_cache",
        "deserialize_cuda_engine",
        "create_execution_context",
        "set_input_shape",
        "set_tensor_address",
        "execute_async_v3",
    }
    assert expected <= used, expected - used
    checked = {"get_tensor_profile_shape", "get_tensor_dtype", "get_timing_cache", "set_timing_cache", "clear_flag"}
    assert checked <= used
    assert "Context" not in used and "pop" not in used  # pycuda's, not TensorRT's


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_tensorrt_attribute_exists_in_each_supported_version(version):
    names = names_of(version)
    for path in TENSORRT_CODE:
        missing = sorted(tensorrt_attributes(path) - names)
        assert not missing, f"{path.name} uses {missing}, which TensorRT {version} does not define"


def test_the_removed_weakly_typed_api_is_not_used():
    for path in [*TENSORRT_CODE, ROOT / "dav2" / "export" / "explicit.py"]:
        assert not all_attribute_names(path) & REMOVED_IN_11, path.name


def test_the_tables_tell_the_versions_apart():
    """The check can fail: names TensorRT 11 removed are present in 10.x and absent in 11.4."""
    assert {"OBEY_PRECISION_CONSTRAINTS", "int8_calibrator"} <= names_of("10.3.0")
    assert not {"OBEY_PRECISION_CONSTRAINTS", "int8_calibrator", "IInt8EntropyCalibrator2"} & names_of("11.4.0.106")


def test_the_test_double_defines_what_dav2_uses():
    """tests/tensorrt_double.py stands in for TensorRT in test_tensorrt_double.py: every TensorRT
    name dav2 uses must exist there too, or those tests would not run dav2's real calls."""
    import tensorrt_double

    module = tensorrt_double.tensorrt_module()
    classes = [getattr(module, n) for n in dir(module) if isinstance(getattr(module, n), type)]
    classes += [tensorrt_double.Network, tensorrt_double.BuilderConfig, tensorrt_double.OptimizationProfile,
                tensorrt_double.Engine, tensorrt_double.ExecutionContext, tensorrt_double.TimingCache]  # fmt: skip
    defined = set(dir(module)) | {n for c in classes for n in dir(c)}
    used = set().union(*(tensorrt_attributes(p) for p in TENSORRT_CODE))
    assert used - defined == {"name"}, used - defined  # .name: the enums' own attribute
