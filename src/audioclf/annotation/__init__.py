"""Labels as data (an append-only log of answers and the manifest made of it) and what to label next."""
