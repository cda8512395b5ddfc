"""The custodians' web station (issue 17): served by the dock, on its archive.

Custodians file what arrived (two of them, R13.3), the unit head reviews work records
(R12.3), the legal office runs the yearly review (R17.1); everyone watches recordings in
the page, decrypted at the dock and never written to disk in plaintext, and every view,
playback, download and export goes into a hash-chained access log (R14.2).
"""
