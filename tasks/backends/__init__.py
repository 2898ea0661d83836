"""Backends: `local/` and `gcp/` implement the protocols of `core.contracts` role for role.

Each package has the same module names — `store`, `provision`, `image`, `job`, `server`,
`teardown`, and `backend` that wires them — so a reader who knows one backend finds the
other's counterpart in one hop. Only `flows/wiring.py` chooses between them.
"""
