"""Detection: preprocessing for the model, inference backends (onnxruntime, OpenVINO), NMS,
the detection pipeline, routing decisions made during a run, results and outputs."""
