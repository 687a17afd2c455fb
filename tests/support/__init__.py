"""Shared fixtures; every module here is loaded as a pytest plugin by tests/conftest.py."""
