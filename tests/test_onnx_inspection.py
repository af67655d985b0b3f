"""Graph inspection of the onnxruntime backend on small hand-built ONNX graphs."""

from __future__ import annotations

import pytest
import torch

from matrix.formats.onnx import count_ops, inspect_models, qdq_pairs, split_qparams, summarize

onnx = pytest.importorskip("onnx")
helper = onnx.helper
FLOAT = onnx.TensorProto.FLOAT


def graph_model(nodes: list, opset: int = 20):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def qdq_conv_graph():
    """x -Q-DQ-> Conv (weight DQ'd from int8) -> Relu -Q-DQ-> y: two activation pairs, one weight DQ."""
    return graph_model([
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"]),
        helper.make_node("Conv", ["xd", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"]),
    ])


def integer_graph():
    """What ORT's optimizer or its QOperator quantizer leaves: integer kernels beside float ones."""
    return graph_model([
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("QLinearConv", ["xq", "s", "z", "w", "s", "z", "s", "z"], ["c"]),
        helper.make_node("QLinearConv", ["c", "s", "z", "w", "s", "z", "s", "z"], ["c2"]),
        helper.make_node("DequantizeLinear", ["c2", "s", "z"], ["d"]),
        helper.make_node("MatMulInteger", ["a", "b"], ["m"]),
        helper.make_node("QGemm", ["a", "s", "z", "b", "s", "z"], ["g"], domain="com.microsoft"),
        helper.make_node("MatMul", ["d", "m"], ["y"]),
    ])


def test_qdq_graph_has_pairs_and_only_float_compute():
    model = qdq_conv_graph()
    quantized, floating = count_ops(model.graph)
    assert dict(quantized) == {}
    assert dict(floating) == {"Conv": 1}
    assert qdq_pairs(model.graph) == 2


def test_integer_kernels_are_quantized_compute():
    model = integer_graph()
    quantized, floating = count_ops(model.graph)
    assert dict(quantized) == {"QLinearConv": 2, "MatMulInteger": 1, "QGemm": 1}
    assert dict(floating) == {"MatMul": 1}
    assert qdq_pairs(model.graph) == 0


def test_an_int8_concat_beside_float_convs_is_not_quantized_compute():
    model = graph_model([helper.make_node("Conv", ["x", "w"], ["a"]),
                         helper.make_node("QLinearConcat", ["s", "z", "a", "s", "z"], ["y"], domain="com.microsoft")])
    found = inspect_models(model, model)
    assert found.quantized_ops == 0
    assert found.notes["optimized"]["int8_data"] == {"QLinearConcat": 1}


def test_a_dequantize_not_fed_by_quantize_is_no_pair():
    model = graph_model([helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"]),
                         helper.make_node("MatMul", ["x", "w"], ["y"])])
    assert qdq_pairs(model.graph) == 0
    assert dict(count_ops(model.graph)[1]) == {"MatMul": 1}


def test_inspection_counts_the_optimized_graph_and_notes_both():
    found = inspect_models(qdq_conv_graph(), integer_graph())
    assert found.quantized_ops == 4
    assert found.float_ops == 1
    assert found.notes["opset"] == 20
    assert found.notes["exported"]["qdq_pairs"] == 2
    assert found.notes["optimized"]["quantized"] == {"QLinearConv": 2, "MatMulInteger": 1, "QGemm": 1}


def test_qdq_left_in_the_optimized_graph_is_not_quantized():
    """Q/DQ around a float Conv after ORT's optimizations means ORT ran the Conv in float."""
    found = inspect_models(qdq_conv_graph(), qdq_conv_graph())
    assert found.quantized_ops == 0
    assert found.float_ops == 1


def test_summary_reads_the_default_domain_opset():
    assert summarize(graph_model([], opset=17))["opset"] == 17


def split_graph(output_scale: float):
    """x -Q/DQ-> Split -> each half -Q/DQ->: the guide's split, its outputs' scale chosen."""
    scales = [helper.make_tensor("s_in", FLOAT, [], [0.5]), helper.make_tensor("s_out", FLOAT, [], [output_scale])]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s_in"], ["xd"]),
        helper.make_node("Split", ["xd"], ["a", "b"], axis=1, num_outputs=2),
    ]
    for half in ("a", "b"):
        nodes += [helper.make_node("QuantizeLinear", [half, "s_out"], [half + "q"]),
                  helper.make_node("DequantizeLinear", [half + "q", "s_out"], [half + "d"])]
    model = graph_model(nodes)
    model.graph.initializer.extend(scales)
    return model


def test_split_outputs_sharing_the_inputs_scale_are_found_shared():
    model = split_graph(0.5)
    (split,) = split_qparams(model.graph, model.graph)
    assert split["shared_qparams"] is True
    assert split["output_scales"] == [0.5, 0.5]
    assert qdq_pairs(model.graph) == 3


def test_split_outputs_with_their_own_scale_are_not_shared():
    model = split_graph(0.25)
    (split,) = split_qparams(model.graph, model.graph)
    assert split["shared_qparams"] is False
    assert split["input_scale"] == 0.5


def test_an_export_with_the_reused_torchlib_registry_is_the_export_without_it(tmp_path, monkeypatch):
    from torch.onnx._internal.exporter import _registration

    from matrix.formats.onnx import export

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    example = (torch.randn(2, 3, 6, 6),)
    export(model, example, tmp_path / "reused.onnx")  # installs the reuse
    assert hasattr(_registration.ONNXRegistry, "_qmatrix_from_torchlib")
    monkeypatch.setattr(_registration.ONNXRegistry, "from_torchlib", _registration.ONNXRegistry._qmatrix_from_torchlib)
    export(model, example, tmp_path / "built.onnx")
    assert (tmp_path / "reused.onnx").read_bytes() == (tmp_path / "built.onnx").read_bytes()


def test_integer_weightless_ops_beside_float_convolutions_are_not_quantized_compute():
    """A QLinearAdd between convolutions that stayed float: the model did not run quantized."""
    model = graph_model([
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("QLinearAdd", ["cq", "s", "z", "cq", "s", "z", "s", "z"], ["a"], domain="com.microsoft"),
        helper.make_node("DequantizeLinear", ["a", "s", "z"], ["y"]),
    ])
    inspection = inspect_models(model, model)
    assert inspection.quantized_ops == 0 and dict(inspection.floating) == {"Conv": 1}
    assert inspection.notes["integer_beside_float_compute"] == {"QLinearAdd": 1}


def test_integer_weightless_ops_count_where_no_compute_op_is_float():
    alone = graph_model([
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("QLinearAdd", ["xq", "s", "z", "xq", "s", "z", "s", "z"], ["a"], domain="com.microsoft"),
        helper.make_node("DequantizeLinear", ["a", "s", "z"], ["y"]),
    ])
    assert dict(inspect_models(alone, alone).quantized) == {"QLinearAdd": 1}
    beside = graph_model(list(integer_graph().graph.node) + [
        helper.make_node("QLinearAdd", ["c", "s", "z", "c", "s", "z", "s", "z"], ["a"], domain="com.microsoft")])
    assert inspect_models(beside, beside).quantized["QLinearAdd"] == 1
