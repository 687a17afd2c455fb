"""Catalogue backends (SIP2, REST, local) and the durable outbox that feeds them."""
