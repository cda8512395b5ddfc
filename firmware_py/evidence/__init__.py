"""The evidence format and its store: the ``store``, encrypted ``evidence_file``s, device
and agency ``keys``, ``seal`` manifests, the hash-chained ``audit`` log, the ``canonical``
JSON encoding they sign, and the agency's side: ``verify``, ``gaps``, ``export``."""
