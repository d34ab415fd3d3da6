"""Shared test helpers live beside this file (`evaluate_fakes`, `fake_run`, `pipeline_helpers`):
pytest's default import mode puts a conftest's folder on sys.path, so every test folder imports
them by name."""
