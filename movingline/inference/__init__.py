"""Serving the trained model: the HTTP server (server.py) on the exported ONNX model."""
