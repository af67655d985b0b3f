"""Artifact formats: what a mode makes and a backend deploys, apart from either.

Each module holds one format's making (export, conversion), loading, running as a module,
inspection (which ops compute in integers, which in float) and layer reading: ``onnx``,
``tflite``, ``openvino``; ``compiled``, a graph a backend compiled whole; ``graph``, which
module each node of a torch.fx graph computes for; ``float_artifacts``, a float model's
artifact made once per process; ``layers``, what every format's layer reading returns.
Modes and backends import formats; a format imports neither.
"""
