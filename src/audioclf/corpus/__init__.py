"""A corpus index: every window of every recording, embedded once, stored on disk, searched by example or words."""
