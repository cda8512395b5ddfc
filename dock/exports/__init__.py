"""Copies of verified evidence for people outside the archive: playable MP4s with chapters
(``remux``), Content Credentials on them (``credentials``), and the labelled long-term copies
of Article 16 (``longterm``)."""
