"""Validation: FSC metrics and overestimation, pose errors, consensus of engines, reports."""
