"""Reports: static PNG plots and self-contained interactive HTML pages."""
