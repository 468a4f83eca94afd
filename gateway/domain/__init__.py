"""The pure core: value types, rules and state machines. Standard library only: no asyncio,
no gRPC, no SQL (tests/unit/test_layering.py keeps it so)."""
