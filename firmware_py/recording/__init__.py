"""The recording pipeline, composed as picamera2 composes outputs: the ``pipeline``
(``RecordingPipeline`` and its implementation ``Recorder``), the pre-event ``ring``, the
``segment`` writer, ``photos``, the burned-in ``stamp`` and the segment ``metadata``."""
