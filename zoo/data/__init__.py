"""Procedurally generated datasets (no downloads): deterministic by seed."""
