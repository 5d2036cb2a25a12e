"""The offline backend: answers are embedded on this machine with all-MiniLM-L6-v2 (int8 ONNX)."""
