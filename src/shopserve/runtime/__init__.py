"""Adapters to the engines that run models (ONNX Runtime today).

The rest of shopserve imports engines only through this package.
"""
