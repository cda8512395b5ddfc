"""The officer's field work: the ``activity`` record (written and read back),
``interruptions`` and their ``workrecord``, and ``speech`` (announcements rendered by
espeak-ng, with the shipped ``clips/`` as fallback)."""
