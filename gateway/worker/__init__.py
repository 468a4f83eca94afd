"""`mam-worker`: runs on a host near the broker (typically Windows), hosts the terminals of some
accounts and connects out to the gateway's WorkerService (docs/workers.md).

| module      | holds                                                                    |
|-------------|--------------------------------------------------------------------------|
| cli.py      | the program: configuration, signals, exit codes                          |
| config.py   | the worker's TOML configuration, validated                               |
| backends.py | the terminal backends by name (sim; MT5 added with one entry), opening   |
| client.py   | TerminalWorker: the stream, commands per terminal, heartbeats, backoff    |

The stream's messages are mapped in gateway/terminals/remote/wire.py, shared with the gateway.
"""
