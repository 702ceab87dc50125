"""The agent (``pynet agent``): flags (:mod:`.config`), wiring (:mod:`.app`), HTTP endpoints
(:mod:`.server`) and the command line (:mod:`.cli`). Nothing is imported here."""

__all__: list[str] = []
