"""Tasks: a project's tasks, their dependency graph, and who may change them."""
