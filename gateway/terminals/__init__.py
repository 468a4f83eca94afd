"""Terminal backends behind one `Terminal` protocol (see protocol.py)."""
