"""The `kiosk` command and its subcommands (card, sync, fleet, doctor)."""
