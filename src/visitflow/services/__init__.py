"""The one way to act on and look at visits, shared by the REST API (`api/`), the UI (`ui/`), the demo seed
and the CLI: `commands` change visits (workflow Updates, signals, release batches), `queries` read the SQL read
model. Neither `api/` nor `ui/` talks to the tables or the workflows directly.
"""
