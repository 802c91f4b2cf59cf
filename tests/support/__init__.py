"""Helpers shared by the unit, integration and system tests (importable: tests.support.*)."""
