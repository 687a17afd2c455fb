"""The functional core: the patron and staff state machines, their events and effects, loan and
barcode rules, and the contracts (card, catalogue, interfaces) the edges implement.

Plain Python over plain, typed data with injected clocks: no Kivy, pyscard, gpiozero, requests,
TinyDB or cryptography here (an import-linter contract in the test command enforces it)."""
