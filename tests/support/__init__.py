"""Helpers shared by test folders: plain functions and classes, no fixtures.

Fixtures live in conftest.py files and in the ``tests/fixtures_*.py`` plugins; they and the tests
import what they share from here, never from another folder's conftest or test module.
"""
