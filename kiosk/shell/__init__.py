"""The imperative shell: builds the backends from configuration (launcher), routes events and
runs effects (controller), the demo wiring, systemd notification and staff's backend."""
