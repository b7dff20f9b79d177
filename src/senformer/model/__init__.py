"""Enformer's modules: the trunk, its layers, positional features and the attention kinds."""
