"""What both ends of the dock link share: the wire protocol (``sync.protocol``, pure, no
I/O), the device's edge of a sync session (``sync.device_sync``), the paho-mqtt client
factory (``sync.mqtt``) and what enrolment leaves on a device for it
(``sync.credentials``). The dock's side lives in ``dock/``."""
