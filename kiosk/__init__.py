"""Self-service library checkout kiosk (図書館 自動貸出機) for Raspberry Pi."""

__version__ = "0.1.0"
