"""Tasks: a problem source, the prompt formats of both roles, and an answer verifier (see base.Task)."""
