"""The docking station: the ingest service that takes devices' evidence over MQTT, the
write-once archive and its index, signed receipts, enrolment and the dock's PKI, the ledger
of who had which device, and the broker processes (Mosquitto with mutual TLS and ACL, the
embedded fallback). It builds on ``sync/`` (the wire protocol both ends share) and on the
evidence format in ``firmware_py/``; nothing below it imports it."""
