"""A SQL Server CDC emulator hosted in PostgreSQL (see docs/emulator.md)."""
