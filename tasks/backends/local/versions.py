"""Which model version the local server serves: the one recorded for the live process."""

from __future__ import annotations

from tasks.backends.local.server import LocalModelServer


class LocalServingLookup:
    """`ServingLookup` over `serving.json` and the live server's working folder."""

    def __init__(self, server: LocalModelServer) -> None:
        self.server = server

    def serving(self) -> dict[str, str]:
        live = self.server.live()
        prefix = self.server.served_prefix(live) if live is not None else None
        if live is None or prefix is None:
            return {}
        key = prefix.rstrip("/").rsplit("/", 1)[-1]
        return {key: f"{live.engine} at {live.base_url} (pid {live.server_id})"}
