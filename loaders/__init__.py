"""Upstream modules: one submodule each, with its tables and batched loaders."""

MODULES = ("programs", "mentorship", "talentscope", "missions", "portfolio", "billing")
